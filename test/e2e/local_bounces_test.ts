/**
 * Bounces of local delivery end to end: what they tell an outside sender
 * (RFC 3464), and that what they leave out is in the mail log.
 */

import assert from "node:assert/strict";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

describe("bounces of local delivery", () => {
  let server: Server;
  let scratch: string;

  before(async () => {
    scratch = await tempDir("postern-local-bounce-");
    const failing = join(scratch, "secret-filter.sh");
    await writeFile(
      failing,
      "#!/bin/sh\ncat >/dev/null\necho 'cannot open /srv/secret/db' >&2\nexit 3\n",
    );
    await chmod(failing, 0o755);
    server = await startServer({
      config: {
        "postern.yaml": [
          "delivery:",
          "  retry_initial: 1s",
          "  retry_max: 1s",
          "  max_queue_lifetime: 2s",
          "",
        ].join("\n"),
        "domains/example.test/users": "alice\ncarol\n",
        "domains/example.test/aliases": [
          `failpipe: | ${failing} --token hunter2`,
          "mixed: alice, failpipe",
          // A mailbox whose name no file system takes (more than 255 bytes).
          `longbox: ${"x".repeat(300)}`,
          "",
        ].join("\n"),
      },
    });
    // carol's Maildir cannot be made: a file stands where it goes, which
    // the operator can fix (a temporary failure, until the message expires).
    await mkdir(join(server.dataDir, "mail", "example.test"), { recursive: true });
    await writeFile(join(server.dataDir, "mail", "example.test", "carol"), "not a directory");
  });
  after(async () => {
    await cleanup(server);
  });

  /** Sends from alice (local, so that her bounce lands in her Maildir); returns the queue ID. */
  async function send(to: string, subject: string): Promise<string> {
    const result = await swaks(server, [
      "--from",
      "alice@example.test",
      "--to",
      to,
      "--header",
      `Subject: ${subject}`,
    ]);
    const accepted = replies(result.stdout).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
    assert.ok(accepted, `${to}: ${result.stdout}`);
    return accepted.split(" ").at(-1)!;
  }

  /** The bounce about `qid` in alice's Maildir, unfolded (RFC 5322 section 2.2.3). */
  async function bounceOf(qid: string): Promise<string> {
    await server.waitForLog(new RegExp(`qid=${qid} event=dsn kind=failed`));
    const found = await eventually(async () => {
      const all = await maildirMessages(server.dataDir, "example.test", "alice");
      return all.find((m) => m.includes(`Queue ID: ${qid}`));
    });
    return found.replace(/\n[ \t]+/g, " ");
  }

  it("says a pipe failed and its exit status, not its command line or output, which the log keeps", async () => {
    const qid = await send("failpipe@example.test", "to-failpipe");
    const line = await server.waitForLog(new RegExp(`qid=${qid} event=delivery .*result=failed`));
    assert.match(line, /hunter2/);
    assert.match(line, /cannot open \/srv\/secret\/db/);
    const bounce = await bounceOf(qid);
    assert.match(bounce, /^Diagnostic-Code: X-Postern; pipe delivery failed \(exit status 3\)$/m);
    for (const secret of ["hunter2", "secret-filter", "/srv/secret", scratch]) {
      assert.ok(!bounce.includes(secret), `${secret} in the bounce:\n${bounce}`);
    }
  });

  it("says a mailbox was unavailable, not where the data directory is", async () => {
    const qid = await send("carol@example.test", "to-carol");
    const line = await server.waitForLog(new RegExp(`qid=${qid} event=delivery .*result=deferred`));
    assert.ok(line.includes(join(server.dataDir, "mail")), line);
    const bounce = await bounceOf(qid);
    assert.match(
      bounce,
      /^Diagnostic-Code: X-Postern; .*local delivery failed: mailbox unavailable$/m,
    );
    assert.ok(!bounce.includes(server.dataDir), bounce);
    assert.ok(!bounce.includes("maildir"), bounce);
  });

  it("bounces at once, 5.2.0, a mailbox whose name the file system will never take", async () => {
    const qid = await send("longbox@example.test", "to-longbox");
    const first = await server.waitForLog(new RegExp(`qid=${qid} event=delivery `));
    assert.match(first, /result=failed/);
    assert.match(first, /ENAMETOOLONG/);
    const bounce = await bounceOf(qid);
    assert.match(bounce, /^Status: 5\.2\.0$/m);
    assert.match(
      bounce,
      /^Diagnostic-Code: X-Postern; local delivery failed: mailbox unavailable$/m,
    );
    assert.ok(!bounce.includes(server.dataDir), bounce);
  });

  it("says an alias was partly delivered when one of its destinations failed and others took it", async () => {
    const qid = await send("mixed@example.test", "to-mixed");
    const bounce = await bounceOf(qid);
    assert.match(bounce, /^Final-Recipient: rfc822; ?mixed@example\.test$/m);
    assert.match(bounce, /^Action: failed$/m);
    assert.match(
      bounce,
      /^Diagnostic-Code: X-Postern; partly delivered: the message reached some of this address's destinations, not the others: pipe delivery failed \(exit status 3\)$/m,
    );
    // alice, a member, has the message; the bounce does not name her.
    const stored = await maildirMessages(server.dataDir, "example.test", "alice");
    assert.ok(stored.some((m) => m.includes("Subject: to-mixed")));
    const report = bounce.slice(
      bounce.indexOf("Content-Description: Notification"),
      bounce.indexOf("Content-Description: Header"),
    );
    assert.doesNotMatch(report, /alice/);
  });
});
