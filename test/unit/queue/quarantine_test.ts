/**
 * Moving damaged spool files into corrupt/ at start-up: never over what is
 * already there, and a file that cannot be moved is left, reported and
 * skipped, without stopping the server.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, readFile, rename, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { newQueueId, Spool } from "../../../src/queue/mod.ts";
import { MAX_ASIDE_NAMES, moveAside } from "../../../src/queue/quarantine.ts";
import { listDir, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";
import { FsRecorder } from "./fs_recorder.ts";

describe("moveAside", () => {
  let dir: string;
  let from: string;
  let to: string;

  beforeEach(async () => {
    dir = await makeTempDir("postern-aside-");
    from = join(dir, "from");
    to = join(dir, "to");
    await mkdir(from);
    await mkdir(to);
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("moves a file under its own name when that is free", async () => {
    await writeFile(join(from, "a.msg"), "a");
    assert.equal(await moveAside(from, to, ["a.msg"]), join(to, "a.msg"));
    assert.deepEqual([await listDir(from), await listDir(to)], [[], ["a.msg"]]);
  });

  it("never replaces a file already there: the new one gets the first free suffix", async () => {
    await writeFile(join(to, "a.msg"), "earlier");
    await writeFile(join(to, "a.msg.1"), "earlier too");
    await writeFile(join(from, "a.msg"), "new");
    assert.equal(await moveAside(from, to, ["a.msg"]), join(to, "a.msg.2"));
    assert.equal(await readFile(join(to, "a.msg"), "utf8"), "earlier");
    assert.equal(await readFile(join(to, "a.msg.1"), "utf8"), "earlier too");
    assert.equal(await readFile(join(to, "a.msg.2"), "utf8"), "new");
  });

  it("steps around a directory of the same name, which a rename fails on", async () => {
    await mkdir(join(to, "junk.txt", "inner"), { recursive: true });
    await writeFile(join(from, "junk.txt"), "junk");
    assert.equal(await moveAside(from, to, ["junk.txt"]), join(to, "junk.txt.1"));
    assert.deepEqual(await listDir(join(to, "junk.txt")), ["inner"]);
  });

  it("keeps a message and its state file together under one suffix", async () => {
    await writeFile(join(to, "x.state"), "earlier state");
    await writeFile(join(from, "x.msg"), "m");
    await writeFile(join(from, "x.state"), "s");
    assert.equal(await moveAside(from, to, ["x.msg", "x.state"]), join(to, "x.msg.1"));
    assert.deepEqual(await listDir(to), ["x.msg.1", "x.state", "x.state.1"]);
    assert.equal(await readFile(join(to, "x.state.1"), "utf8"), "s");
  });

  it("throws when every name is taken, and moves nothing", async () => {
    await writeFile(join(from, "a"), "new");
    await writeFile(join(to, "a"), "");
    for (let n = 1; n < MAX_ASIDE_NAMES; n++) await writeFile(join(to, `a.${n}`), "");
    await assert.rejects(moveAside(from, to, ["a"]), /no free name for "a"/);
    assert.deepEqual(await listDir(from), ["a"]);
  });
});

describe("Spool.load() quarantine", () => {
  let dataDir: string;
  let spool: Spool;
  let queueDir: string;
  let corruptDir: string;
  let recorder: FsRecorder | undefined;

  beforeEach(async () => {
    dataDir = await makeTempDir("postern-quarantine-");
    spool = new Spool(dataDir);
    await spool.init();
    queueDir = join(dataDir, "spool", "queue");
    corruptDir = join(dataDir, "spool", "corrupt");
  });
  afterEach(async () => {
    recorder?.restore();
    recorder = undefined;
    await spool.close();
    await removeDir(dataDir);
  });

  it("a directory in corrupt/ named as a stray file does not stop the load", async () => {
    // The audit's case: start-up failed with EISDIR from the rename.
    await mkdir(join(corruptDir, "junk.txt", "inner"), { recursive: true });
    await writeFile(join(queueDir, "junk.txt"), "junk");
    const good = makeEnvelope();
    await spoolMessage(spool, good, "Subject: fine\r\n\r\nbody\r\n");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items.map((i) => i.envelope.id), [good.id]);
    assert.deepEqual(corrupt, [{
      file: join(corruptDir, "junk.txt.1"),
      reason: "not a spool file",
    }]);
    assert.equal(await readFile(join(corruptDir, "junk.txt.1"), "utf8"), "junk");
  });

  it("what is not a regular file is moved aside without being opened: a FIFO, a link, a directory", async () => {
    // A FIFO opened to read waits for a writer: start-up hung there.
    const fifo = newQueueId();
    const made = spawnSync("mkfifo", [join(queueDir, `${fifo}.msg`)]);
    assert.equal(made.status, 0, `mkfifo: ${made.stderr}`);
    // A link to a well-sealed message elsewhere: nothing vouches for it.
    const outside = new Spool(join(dataDir, "elsewhere"));
    await outside.init();
    const linked = makeEnvelope();
    await spoolMessage(outside, linked, "Subject: elsewhere\r\n\r\nbody\r\n");
    await outside.close();
    await symlink(
      join(dataDir, "elsewhere", "spool", "queue", `${linked.id}.msg`),
      join(queueDir, `${linked.id}.msg`),
    );
    const dir = newQueueId();
    await mkdir(join(queueDir, `${dir}.msg`));
    const good = makeEnvelope();
    await spoolMessage(spool, good, "Subject: fine\r\n\r\nbody\r\n");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("load() did not finish within 10 s")), 10_000);
    });
    const { items, corrupt } = await Promise.race([spool.load(), hung]).finally(() =>
      clearTimeout(timer)
    );
    assert.deepEqual(items.map((i) => i.envelope.id), [good.id]);
    assert.deepEqual(
      corrupt.sort((a, b) => a.file.localeCompare(b.file)),
      [
        { file: join(corruptDir, `${fifo}.msg`), reason: "not a regular file (a FIFO)" },
        {
          file: join(corruptDir, `${linked.id}.msg`),
          reason: "not a regular file (a symbolic link)",
        },
        { file: join(corruptDir, `${dir}.msg`), reason: "not a regular file (a directory)" },
      ].sort((a, b) => a.file.localeCompare(b.file)),
    );
  });

  it("a message that is not a regular file goes aside with its state file, which is never removed", async () => {
    const envelope = makeEnvelope({ to: ["alice@ex.test"] });
    await spoolMessage(spool, envelope, "Subject: s\r\n\r\nbody\r\n");
    await spool.saveState(envelope.id, {
      v: 1,
      recipients: [{ address: "alice@ex.test", status: "pending", attempts: 1 }],
      next_attempt_at: "2026-01-02T04:00:00.000Z",
    });
    const msg = join(queueDir, `${envelope.id}.msg`);
    await rename(msg, join(dataDir, "away.msg"));
    await symlink(join(dataDir, "away.msg"), msg);
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.deepEqual(corrupt, [{
      file: join(corruptDir, `${envelope.id}.msg`),
      reason: "not a regular file (a symbolic link)",
    }]);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual(await listDir(corruptDir), [`${envelope.id}.msg`, `${envelope.id}.state`]);
  });

  it("a damaged message never replaces one quarantined before under the same name", async () => {
    const id = newQueueId();
    await writeFile(join(corruptDir, `${id}.msg`), "quarantined by an earlier start");
    await writeFile(join(queueDir, `${id}.msg`), "{not json\n");
    const { corrupt } = await spool.load();
    assert.equal(corrupt.length, 1);
    assert.equal(corrupt[0]!.file, join(corruptDir, `${id}.msg.1`));
    assert.equal(
      await readFile(join(corruptDir, `${id}.msg`), "utf8"),
      "quarantined by an earlier start",
    );
    assert.equal(await readFile(join(corruptDir, `${id}.msg.1`), "utf8"), "{not json\n");
  });

  it("a file that cannot be moved is reported, left in queue/ and skipped; the rest load", async () => {
    const bad = newQueueId();
    const badPath = join(queueDir, `${bad}.msg`);
    await writeFile(badPath, "{not json\n");
    await writeFile(join(queueDir, "stray.txt"), "?");
    const good = makeEnvelope();
    await spoolMessage(spool, good, "Subject: fine\r\n\r\nbody\r\n");
    recorder = new FsRecorder();
    recorder.install();
    const failure = Object.assign(new Error("EIO: i/o error, rename"), { code: "EIO" });
    recorder.fail("rename", badPath, failure);
    recorder.fail("rename", join(queueDir, "stray.txt"), failure);
    const { items, corrupt, unfinished } = await spool.load();
    assert.deepEqual(items.map((i) => i.envelope.id), [good.id]);
    assert.deepEqual(unfinished, []);
    assert.deepEqual(corrupt.sort((a, b) => a.file.localeCompare(b.file)), [
      {
        file: badPath,
        reason: "envelope is not valid JSON; left in queue/, not moved to corrupt/: " +
          "EIO: i/o error, rename",
      },
      {
        file: join(queueDir, "stray.txt"),
        reason: "not a spool file; left in queue/, not moved to corrupt/: EIO: i/o error, rename",
      },
    ]);
    assert.deepEqual(await listDir(corruptDir), []);
    assert.equal(await readFile(badPath, "utf8"), "{not json\n");
    // Its ID stays taken: a new message under it would be written over it.
    await assert.rejects(spool.receive(makeEnvelope({ id: bad })), { code: "EEXIST" });
  });
});
