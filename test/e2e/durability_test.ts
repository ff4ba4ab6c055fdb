/**
 * Durability as the kernel sees it: strace follows every thread of the
 * running server while two messages are sent with swaks (the first into a
 * file made at DATA, the second into a spare made ahead), and the order of
 * the real system calls is checked. The spool file is made in queue/ and
 * queue/ fsynced, and the file's seal written and the file fdatasynced,
 * before the 250 is written to the socket (see src/queue/seal.ts);
 * the Maildir file is synced, renamed into new/ and new/ fsynced before the
 * spool copy is unlinked. (A killed process keeps its page cache, so the
 * crash tests cannot see a missing sync; this test can.)
 */

import assert from "node:assert/strict";
import { realpath, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { cleanup, queuedId, type Server, startServer, swaks, tempDir } from "./harness.ts";
import { attachStrace, type Syscall, type Tracer } from "../support/strace.ts";

const SYNCS = new Set(["fsync", "fdatasync"]);
const RENAMES = new Set(["rename", "renameat", "renameat2"]);
const UNLINKS = new Set(["unlink", "unlinkat"]);
const WRITES = new Set(["write", "writev", "sendto", "sendmsg"]);
const FILE_WRITES = new Set(["write", "writev", "pwrite64"]);

/** The first call that matches, succeeded and began after `after`; fails the test otherwise. */
function first(
  calls: Syscall[],
  what: string,
  test: (call: Syscall) => boolean,
  after = -1,
): Syscall {
  const call = calls.find((c) => c.begin > after && test(c));
  assert.ok(call, `no ${what} after trace line ${after}:\n${summary(calls)}`);
  assert.ok(call.end >= 0, `${what} never returned`);
  assert.match(call.result, /^\d+/, `${what} failed: ${call.result}`);
  return call;
}

function summary(calls: Syscall[]): string {
  return calls.filter((c) => !WRITES.has(c.name) || c.args.includes("250 ")).map((c) =>
    `${c.begin}-${c.end} [${c.thread}] ${c.name}(${c.args.slice(0, 200)}) = ${c.result}`
  ).join("\n");
}

/** Asserts that `a` has returned before `b` began. */
function before(a: Syscall, b: Syscall, what: string): void {
  assert.ok(
    a.end < b.begin,
    `${what}: ${a.name} ended at line ${a.end}, ${b.name} began at ${b.begin}`,
  );
}

describe("durability under strace", () => {
  let server: Server | undefined;
  let tracer: Tracer | undefined;
  let scratch: string | undefined;
  after(async () => {
    await cleanup(server);
    tracer?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("syncs queue/ and the sealed spool file before the 250, and the Maildir before unlinking the spool copy", async () => {
    server = await startServer({ config: { "domains/example.test/users": "alice\n" } });
    scratch = await tempDir("postern-strace-");
    const traceFile = join(scratch, "trace.txt");
    tracer = await attachStrace(server.child.pid!, traceFile);
    // The first message finds no spare file ready: its file is created at
    // DATA. The second is written into a spare made meanwhile, under trace.
    const ids: string[] = [];
    for (const body of ["durable", "into a spare"]) {
      const result = await swaks(server, [
        "--from",
        "sender@client.test",
        "--to",
        "alice@example.test",
        "--body",
        body,
      ]);
      const id = queuedId(result);
      await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1`), 30_000);
      ids.push(id);
    }
    await server.stop();
    await tracer.exited;
    const calls = await tracer.calls();
    const spool = join(await realpath(server.dataDir), "spool");
    const maildir = `${await realpath(server.dataDir)}/mail/example.test/alice`;
    for (const id of ids) checkMessage(calls, spool, maildir, id);
    // The second message's file was made before its transaction began.
    const second = `${spool}/queue/${ids[1]}.msg`;
    const made = first(
      calls,
      "the spare made in queue/",
      (c) => c.name === "openat" && c.args.includes(`"${second}"`) && c.args.includes("O_CREAT"),
    );
    const mail = first(
      calls,
      "the 250 to the second MAIL FROM",
      (c) => WRITES.has(c.name) && /250 2\.1\.0/.test(c.args),
      first(
        calls,
        "the first 250 queued",
        (c) => WRITES.has(c.name) && c.args.includes(`queued as ${ids[0]}`),
      ).end,
    );
    before(made, mail, "the second message took a spare file made ahead");
  });
});

/**
 * Checks the order of one message's calls: its spool file made in queue/
 * and queue/ fsynced, its seal written and the file synced, before its 250;
 * its Maildir file synced, renamed into new/ and new/ fsynced before the
 * spool copy is unlinked.
 */
function checkMessage(calls: Syscall[], spool: string, maildir: string, id: string): void {
  const queued = `${spool}/queue/${id}.msg`;
  // The file appears in queue/ under its final name: made there ahead of
  // need (a spare), or at DATA; never renamed there.
  const made = first(
    calls,
    "the spool file made in queue/",
    (c) => c.name === "openat" && c.args.includes(`"${queued}"`) && c.args.includes("O_CREAT"),
  );
  const dirSync = first(
    calls,
    "fsync of queue/ after the file was made",
    (c) => SYNCS.has(c.name) && c.args.includes(`<${spool}/queue>`),
    made.end,
  );
  const seal = first(
    calls,
    "the seal written",
    (c) => FILE_WRITES.has(c.name) && c.args.includes(`<${queued}>, "SEALED `),
    made.end,
  );
  const fileSync = first(
    calls,
    "sync of the spool file after its seal",
    (c) => SYNCS.has(c.name) && c.args.includes(`<${queued}>`),
    seal.end,
  );
  const reply = first(
    calls,
    "the 250 reply",
    (c) => WRITES.has(c.name) && c.args.includes(`250 2.0.0 Ok: queued as ${id}`),
  );
  before(made, dirSync, "the file is in queue/ before queue/ is fsynced");
  before(dirSync, reply, "queue/ is fsynced before the 250 is written");
  before(seal, fileSync, "the seal is written before the file is synced");
  before(fileSync, reply, "the sealed file is synced before the 250 is written");
  assert.ok(
    !calls.some((c) => RENAMES.has(c.name) && c.args.includes(`"${queued}"`)),
    "nothing is renamed onto the message in queue/",
  );

  const name = new RegExp(`/[0-9]+\\.Q${id}R0\\.`);
  const mailSync = first(
    calls,
    "sync of the Maildir file",
    (c) => SYNCS.has(c.name) && c.args.includes(`<${maildir}/tmp/`) && name.test(c.args),
  );
  const mailRename = first(
    calls,
    "rename into new/",
    (c) =>
      RENAMES.has(c.name) && c.args.includes(`"${maildir}/tmp/`) &&
      c.args.includes(`"${maildir}/new/`) && name.test(c.args),
  );
  const newSync = first(
    calls,
    "fsync of new/ after the rename",
    (c) => SYNCS.has(c.name) && c.args.includes(`<${maildir}/new>`),
    mailRename.end,
  );
  const unlink = first(
    calls,
    "unlink of the spool copy",
    (c) => UNLINKS.has(c.name) && c.args.includes(`"${queued}"`),
  );
  before(reply, mailSync, "delivery starts after the 250");
  before(mailSync, mailRename, "the Maildir file is synced before its rename");
  before(mailRename, newSync, "the rename is done before new/ is fsynced");
  before(newSync, unlink, "new/ is fsynced before the spool copy is removed");
}
