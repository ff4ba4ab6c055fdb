import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type LocalDomain, parseAliases, RecipientResolver } from "../../../src/aliases/mod.ts";
import { DispatchCourier, LocalCourier } from "../../../src/delivery/mod.ts";
import { Counters, Logger, MailLog } from "../../../src/log/mod.ts";
import { Queue, Spool } from "../../../src/queue/mod.ts";
import { makeTempDir, removeDir, retain, until } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";
import { FsRecorder } from "./fs_recorder.ts";

const RECEIVED_AT = "2026-01-02T03:04:05.000Z";
const BODY = "Subject: durable\r\n\r\nbody\r\n";

/** Asserts that the indices are strictly increasing: the events happened in this order. */
function assertOrder(recorder: FsRecorder, steps: Array<[string, number]>): void {
  for (let i = 1; i < steps.length; i++) {
    const [before, a] = steps[i - 1]!;
    const [after, b] = steps[i]!;
    assert.ok(
      a < b,
      `"${before}" (${a}) must come before "${after}" (${b}):\n${recorder.describe()}`,
    );
  }
}

/** The index of the last end of a write to `path` before `limit`. */
function lastWriteEnd(recorder: FsRecorder, path: string, limit: number): number {
  const events = recorder.events.slice(0, limit);
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if (e.call === "write" && e.phase === "end" && e.path === path) return i;
  }
  assert.fail(`no write to ${path}:\n${recorder.describe()}`);
}

/** The end of the first datasync (or full sync) of the file at `path`. */
function fileSyncEnd(recorder: FsRecorder, path: string): number {
  const index = recorder.events.findIndex((e) =>
    (e.call === "datasync" || e.call === "sync") && e.phase === "end" && e.path === path
  );
  assert.ok(index >= 0, `${path} was never synced:\n${recorder.describe()}`);
  return index;
}

describe("durability: the order of writes, syncs and renames", () => {
  let root: string;
  let spool: Spool;
  let recorder: FsRecorder;

  beforeEach(async () => {
    root = await makeTempDir("postern-durability-");
    spool = new Spool(join(root, "data"));
    await spool.init();
    recorder = new FsRecorder();
    recorder.install();
  });
  afterEach(async () => {
    recorder.restore();
    await spool.close();
    await removeDir(root);
  });

  /**
   * Asserts the order of one message's commit, recorded up to the mark
   * "committed": its file appears in queue/ under its final name, an fsync
   * of queue/ begins after that, the last write (the seal) ends before the
   * fdatasync, and commit() resolves only after both syncs have ended.
   */
  function assertCommitOrder(id: string): void {
    const queued = join(spool.root, "queue", `${id}.msg`);
    const queueDir = join(spool.root, "queue");
    const made = recorder.events.findIndex((e) =>
      e.phase === "end" &&
      ((e.call === "open" && e.path === queued) || (e.call === "rename" && e.to === queued))
    );
    assert.ok(made >= 0, `${queued} was never made:\n${recorder.describe()}`);
    const synced = fileSyncEnd(recorder, queued);
    const dirSyncBegin = recorder.find("sync", "begin", queueDir, made);
    const dirSyncEnd = recorder.find("sync", "end", queueDir, dirSyncBegin);
    const committed = recorder.find("mark", "end", "committed");
    assertOrder(recorder, [
      ["the file made in queue/", made],
      ["fsync of queue/ begins", dirSyncBegin],
      ["fsync of queue/ ends", dirSyncEnd],
      ["commit() resolves (the 250 may go out)", committed],
    ]);
    assertOrder(recorder, [
      ["the file made in queue/", made],
      ["last write of the message (its seal)", lastWriteEnd(recorder, queued, synced)],
      ["fdatasync of the message", synced],
      ["commit() resolves (the 250 may go out)", committed],
    ]);
    // No rename stands between the write and the 250 any more.
    assert.ok(
      !recorder.events.some((e, i) => i > made && e.call === "rename" && e.to === queued),
      `a rename into queue/ after the file was made:\n${recorder.describe()}`,
    );
  }

  it("SpoolWriter.commit() resolves after the fsync of queue/ and the fdatasync of the sealed file", async () => {
    const envelope = makeEnvelope({ received_at: RECEIVED_AT });
    await spoolMessage(spool, envelope, BODY);
    recorder.mark("committed");
    assertCommitOrder(envelope.id);
  });

  it("commit() waits for the fsync of queue/ when it ends after the fdatasync of the file", async () => {
    const queueDir = join(spool.root, "queue");
    const release = recorder.hold("sync", queueDir);
    const envelope = makeEnvelope({ received_at: RECEIVED_AT });
    const queued = join(spool.root, "queue", `${envelope.id}.msg`);
    let committed = false;
    const spooled = spoolMessage(spool, envelope, BODY).then(() => {
      committed = true;
      recorder.mark("committed");
    });
    try {
      await until(
        () =>
          recorder.events.some((e) =>
            e.call === "datasync" && e.phase === "end" && e.path === queued
          ),
        10_000,
      );
      // Time for a commit that does not wait to resolve; one that waits never does.
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(committed, false, `committed before queue/ was synced:\n${recorder.describe()}`);
    } finally {
      release();
    }
    await spooled;
    assertCommitOrder(envelope.id);
  });

  it("a spare file's name is durable before its ID is handed out, and its message is committed in the same order", async () => {
    const queueDir = join(spool.root, "queue");
    // The first call finds no spare ready and starts the pool.
    let id: string | undefined;
    for (let i = 0; i < 400 && id === undefined; i++) {
      const next = spool.newId();
      const path = join(queueDir, `${next}.msg`);
      if (recorder.events.some((e) => e.call === "open" && e.phase === "end" && e.path === path)) {
        id = next;
      } else {
        spool.releaseId(next);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    assert.ok(id, `no spare file was handed out:\n${recorder.describe()}`);
    recorder.mark("handed out");
    const queued = join(queueDir, `${id}.msg`);
    const made = recorder.find("open", "end", queued);
    const dirSyncBegin = recorder.find("sync", "begin", queueDir, made);
    assertOrder(recorder, [
      ["the spare made in queue/", made],
      ["fsync of queue/ begins", dirSyncBegin],
      ["fsync of queue/ ends", recorder.find("sync", "end", queueDir, dirSyncBegin)],
      ["its ID handed out", recorder.find("mark", "end", "handed out")],
    ]);
    await spoolMessage(spool, makeEnvelope({ id, received_at: RECEIVED_AT }), BODY);
    recorder.mark("committed");
    assertCommitOrder(id);
    assert.equal(
      recorder.events.filter((e) => e.call === "open" && e.path === queued).length,
      2,
      `the spare was opened again, or another file made in its place:\n${recorder.describe()}`,
    );
  });

  it("Spool.saveState() resolves after the state file and queue/ are synced, in order", async () => {
    const envelope = makeEnvelope({ received_at: RECEIVED_AT });
    const item = await spoolMessage(spool, envelope, BODY);
    recorder.events.length = 0;
    await spool.saveState(envelope.id, { ...item.state, next_attempt_at: RECEIVED_AT });
    recorder.mark("saved");
    const temporary = join(spool.root, "incoming", `${envelope.id}.state`);
    const final = join(spool.root, "queue", `${envelope.id}.state`);
    const queueDir = join(spool.root, "queue");
    const synced = fileSyncEnd(recorder, temporary);
    const renameEnd = recorder.findRename("end", temporary, final);
    const dirSyncBegin = recorder.find("sync", "begin", queueDir, renameEnd);
    assertOrder(recorder, [
      ["last write of the state", lastWriteEnd(recorder, temporary, synced)],
      ["fdatasync of the state", synced],
      ["rename into queue/", recorder.findRename("begin", temporary, final)],
      ["rename done", renameEnd],
      ["fsync of queue/ begins", dirSyncBegin],
      ["fsync of queue/ ends", recorder.find("sync", "end", queueDir, dirSyncBegin)],
      ["saveState() resolves", recorder.find("mark", "end", "saved")],
    ]);
  });

  it("Queue removes the spool message only after the Maildir file and new/ are synced", async () => {
    const mailRoot = join(root, "mail");
    const domain: LocalDomain = {
      name: "ex.test",
      anyUser: false,
      users: new Set(["alice"]),
      aliases: parseAliases("", "ex.test"),
    };
    const resolver = new RecipientResolver(new Map([["ex.test", domain]]), {
      suffixSeparators: "+",
      dropCharacters: ".",
    });
    const local = retain(
      new LocalCourier(() => resolver, {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
      }),
    );
    const courier = new DispatchCourier(local, () => Promise.resolve([]), () => true);
    const mailLines: string[] = [];
    const queue = new Queue(
      spool,
      courier,
      new MailLog((line) => mailLines.push(line), new Counters()),
      new Logger("error", () => {}),
      {
        concurrency: 1,
        retryInitialMs: 60_000,
        retryMaxMs: 60_000,
        maxQueueLifetimeMs: 86_400_000,
      },
    );
    try {
      const envelope = makeEnvelope({ to: ["alice@ex.test"], received_at: RECEIVED_AT });
      const item = await spoolMessage(spool, envelope, BODY);
      recorder.events.length = 0;
      queue.add(item);
      await until(() => mailLines.some((l) => l.includes(" event=completed ")), 20_000);
      const seconds = Math.floor(Date.parse(RECEIVED_AT) / 1000);
      const name = `${seconds}.Q${envelope.id}R0.mx.ex.test`;
      const maildir = join(mailRoot, "ex.test", "alice");
      const tmpFile = join(maildir, "tmp", name);
      const newFile = join(maildir, "new", name);
      const newDir = join(maildir, "new");
      const synced = fileSyncEnd(recorder, tmpFile);
      const renameEnd = recorder.findRename("end", tmpFile, newFile);
      const dirSyncBegin = recorder.find("sync", "begin", newDir, renameEnd);
      assertOrder(recorder, [
        ["last write of the Maildir file", lastWriteEnd(recorder, tmpFile, synced)],
        ["fdatasync of the Maildir file", synced],
        ["rename into new/", recorder.findRename("begin", tmpFile, newFile)],
        ["rename done", renameEnd],
        ["fsync of new/ begins", dirSyncBegin],
        ["fsync of new/ ends", recorder.find("sync", "end", newDir, dirSyncBegin)],
        [
          "unlink of the spool message",
          recorder.find("unlink", "begin", join(spool.root, "queue", `${envelope.id}.msg`)),
        ],
      ]);
    } finally {
      await queue.stop();
    }
  });
});
