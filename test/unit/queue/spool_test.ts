import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { mkdir, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type DeliveryState, newQueueId, Spool } from "../../../src/queue/mod.ts";
import { durabilityFs } from "../../../src/queue/fs_calls.ts";
import { collectBytes, collectText, listDir, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spareId, spoolMessage, until } from "./fixtures.ts";

describe("Spool", () => {
  let dataDir: string;
  let spool: Spool;
  let queueDir: string;
  let corruptDir: string;
  let incomingDir: string;

  beforeEach(async () => {
    dataDir = await makeTempDir("postern-spool-");
    spool = new Spool(dataDir);
    await spool.init();
    queueDir = join(dataDir, "spool", "queue");
    corruptDir = join(dataDir, "spool", "corrupt");
    incomingDir = join(dataDir, "spool", "incoming");
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(dataDir);
  });

  it("init() creates incoming/, queue/ and corrupt/ under <data>/spool", async () => {
    assert.equal(spool.root, join(dataDir, "spool"));
    assert.deepEqual(await listDir(spool.root), ["corrupt", "incoming", "queue"]);
  });

  it("init() removes the spare/ directory an earlier build left", async () => {
    await mkdir(join(spool.root, "spare"));
    await writeFile(join(spool.root, "spare", "spare-1"), "");
    await writeFile(join(spool.root, "spare", "spare-2"), "not ours either");
    const again = new Spool(dataDir);
    await again.init();
    await again.close();
    assert.deepEqual(await listDir(spool.root), ["corrupt", "incoming", "queue"]);
  });

  it("init() removes leftovers in incoming/ when called again", async () => {
    await writeFile(join(incomingDir, "0123456789abcdef"), "half a message");
    await writeFile(join(incomingDir, "x.state"), "{}");
    const writer = await spool.receive(makeEnvelope());
    await writer.write(new TextEncoder().encode("unfinished"));
    const again = new Spool(dataDir);
    await again.init();
    await again.close();
    assert.deepEqual(await listDir(incomingDir), []);
    await writer.abort();
  });

  it("receive() + write() + commit() produce an item whose openMessage() streams the bytes", async () => {
    const envelope = makeEnvelope({ to: ["alice@ex.test", "bob@ex.test"] });
    const writer = await spool.receive(envelope);
    const parts = ["Subject: hi\r\n", "\r\n", "body line\r\n", "with ünïcödé\r\n"];
    for (const part of parts) await writer.write(new TextEncoder().encode(part));
    const expected = new TextEncoder().encode(parts.join(""));
    assert.equal(writer.messageBytes, expected.byteLength);
    // Before the commit the file is in queue/ with an open seal: a restart
    // would remove it, never deliver it.
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`]);
    await writer.readable();
    const open = await readFile(join(queueDir, `${envelope.id}.msg`), "utf8");
    assert.match(open, /^OPEN {3}-{16} -{64}\n\{/);
    const item = await writer.commit();
    assert.deepEqual(item.envelope, envelope);
    assert.equal(item.recovered, false);
    assert.deepEqual(item.state, {
      v: 1,
      recipients: [
        { address: "alice@ex.test", status: "pending", attempts: 0 },
        { address: "bob@ex.test", status: "pending", attempts: 0 },
      ],
    });
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`]);
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual(await collectBytes(spool.openMessage(item)), expected);
  });

  it("commit() stores the seal, then the envelope as a JSON line, then the message", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "X: y\r\n\r\nbody\r\n");
    const raw = await readFile(join(queueDir, `${envelope.id}.msg`), "utf8");
    const [seal, line, ...rest] = raw.split("\n");
    assert.match(seal!, /^SEALED \d{16} [0-9a-f]{64}$/);
    assert.deepEqual(JSON.parse(line!), envelope);
    assert.equal(rest.join("\n"), "X: y\r\n\r\nbody\r\n");
  });

  it("openMessage() streams a large message exactly when it spans many chunks", async () => {
    const envelope = makeEnvelope();
    const writer = await spool.receive(envelope);
    const big = new Uint8Array(700 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) % 251;
    for (let off = 0; off < big.length; off += 10_000) {
      await writer.write(big.subarray(off, off + 10_000));
    }
    const item = await writer.commit();
    assert.deepEqual(await collectBytes(spool.openMessage(item)), big);
  });

  it("abort() leaves nothing in queue/ or incoming/", async () => {
    const writer = await spool.receive(makeEnvelope());
    await writer.write(new TextEncoder().encode("partial"));
    await writer.abort();
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual((await spool.load()).items, []);
  });

  it("receive() refuses a second message with the same ID while the first is open", async () => {
    const envelope = makeEnvelope();
    const writer = await spool.receive(envelope);
    await assert.rejects(spool.receive(envelope), (err: unknown) => {
      assert.equal((err as { code?: string }).code, "EEXIST");
      return true;
    });
    await writer.abort();
  });

  it("receive() refuses the ID of a message being received into its spare file, and the first is kept", async () => {
    const id = await spareId(spool);
    const envelope = makeEnvelope({ id });
    const writer = await spool.receive(envelope);
    await writer.write(new TextEncoder().encode("the first\r\n"));
    await assert.rejects(spool.receive(envelope), (err: unknown) => {
      assert.equal((err as { code?: string }).code, "EEXIST");
      return true;
    });
    const item = await writer.commit();
    assert.equal(await collectText(spool.openMessage(item)), "the first\r\n");
  });

  it("receive() refuses the ID of a queued message, before and after a restart", async () => {
    const envelope = makeEnvelope();
    const item = await spoolMessage(spool, envelope, "acknowledged\r\n");
    await assert.rejects(spool.receive(envelope), { code: "EEXIST" });
    assert.equal(await collectText(spool.openMessage(item)), "acknowledged\r\n");

    await spool.close();
    spool = new Spool(dataDir);
    await spool.init();
    const { items } = await spool.load();
    assert.equal(items.length, 1);
    await assert.rejects(spool.receive(envelope), { code: "EEXIST" });
    assert.equal(await collectText(spool.openMessage(items[0]!)), "acknowledged\r\n");

    // Free again once the message has left the queue.
    await spool.remove(envelope.id);
    const again = await spool.receive(envelope);
    await again.abort();
  });

  it("newId() hands out the ID of a spare file already in queue/; the message is written into that very file", async () => {
    const id = await spareId(spool);
    const path = join(spool.root, "queue", `${id}.msg`);
    const before = await stat(path);
    assert.equal(before.size, 0, "a spare is empty");
    assert.equal(before.mode & 0o777, 0o600);
    const writer = await spool.receive(makeEnvelope({ id }));
    await writer.write(new TextEncoder().encode("into the spare\r\n"));
    const item = await writer.commit();
    assert.equal((await stat(path)).ino, before.ino, "not a new file");
    assert.equal(await collectText(spool.openMessage(item)), "into the spare\r\n");
    // Still in the queue after a restart; the other spares are not.
    await spool.close();
    spool = new Spool(dataDir);
    await spool.init();
    const { items, unfinished, corrupt } = await spool.load();
    assert.deepEqual([items.map((i) => i.envelope.id), unfinished, corrupt], [[id], [], []]);
    assert.deepEqual(await listDir(join(spool.root, "queue")), [`${id}.msg`]);
  });

  it("releaseId() removes a spare whose transaction ended without a message; its ID is not handed out again", async () => {
    const id = await spareId(spool);
    const path = join(spool.root, "queue", `${id}.msg`);
    spool.releaseId(id);
    await until(async () => !(await listDir(join(spool.root, "queue"))).includes(`${id}.msg`));
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const next = spool.newId();
      seen.add(next);
      spool.releaseId(next);
    }
    assert.ok(!seen.has(id), "a released ID came back");
    // A receive under the released ID creates a file of its own.
    const writer = await spool.receive(makeEnvelope({ id }));
    await writer.write(new TextEncoder().encode("late\r\n"));
    await writer.commit();
    assert.equal((await stat(path)).size > 0, true);
  });

  it("receive() takes the ID of a message that was aborted", async () => {
    const envelope = makeEnvelope();
    const first = await spool.receive(envelope);
    await first.abort();
    const second = await spool.receive(envelope);
    await second.write(new TextEncoder().encode("second try\r\n"));
    const item = await second.commit();
    assert.equal(await collectText(spool.openMessage(item)), "second try\r\n");
  });

  it("load() reads committed items back in ID order with their envelopes", async () => {
    const later = makeEnvelope({ received_at: "2026-01-02T03:04:06.000Z" });
    const earlier = makeEnvelope({ received_at: "2026-01-02T03:04:05.000Z" });
    await spoolMessage(spool, later, "second\r\n");
    await spoolMessage(spool, earlier, "first\r\n");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(corrupt, []);
    assert.deepEqual(items.map((i) => i.envelope.id), [earlier.id, later.id]);
    assert.deepEqual(items[0]!.envelope, earlier);
    assert.equal(items[0]!.recovered, true);
    assert.equal(items[0]!.state.recipients[0]!.status, "pending");
    assert.equal(await collectText(spool.openMessage(items[0]!)), "first\r\n");
    assert.equal(await collectText(spool.openMessage(items[1]!)), "second\r\n");
  });

  it("openMessage() opens nothing until read: no descriptor, no error if the item goes first", async () => {
    const item = await spoolMessage(spool, makeEnvelope(), "never read\r\n");
    const path = join(dataDir, "spool", "queue", `${item.envelope.id}.msg`);
    // A delivery that finds the message already stored never reads it.
    const unread = spool.openMessage(item);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const open = await Promise.all(
      readdirSync("/proc/self/fd").map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")),
    );
    assert.ok(!open.includes(path), "the message file is not open");
    // The item is then removed; reading after that fails as a read, not as
    // an uncaught error from a pending open.
    await spool.remove(item.envelope.id);
    await assert.rejects(collectText(unread), { code: "ENOENT" });
  });

  it("load() moves a .msg with an envelope that is not JSON to corrupt/", async () => {
    const id = newQueueId();
    await writeFile(join(queueDir, `${id}.msg`), "{not json\nbody\r\n");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.equal(corrupt.length, 1);
    assert.equal(corrupt[0]!.file, join(corruptDir, `${id}.msg`));
    assert.match(corrupt[0]!.reason, /envelope is not valid JSON/);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual(await listDir(corruptDir), [`${id}.msg`]);
  });

  it("load() moves a .msg whose envelope has the wrong schema to corrupt/", async () => {
    const envelope = makeEnvelope();
    const bad = { ...envelope, to: [] };
    await writeFile(join(queueDir, `${envelope.id}.msg`), JSON.stringify(bad) + "\nbody\r\n");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.equal(corrupt.length, 1);
    assert.match(corrupt[0]!.reason, /envelope is invalid at "to"/);
    assert.deepEqual(await listDir(corruptDir), [`${envelope.id}.msg`]);
  });

  it("load() moves a .msg whose envelope ID differs from its file name to corrupt/", async () => {
    const envelope = makeEnvelope();
    const other = newQueueId(Date.parse(envelope.received_at) + 1);
    await writeFile(join(queueDir, `${other}.msg`), JSON.stringify(envelope) + "\nbody\r\n");
    await writeFile(join(queueDir, `${other}.state`), "{}");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.equal(corrupt.length, 1);
    assert.match(corrupt[0]!.reason, /differs from the file name/);
    // Its state file goes with it.
    assert.deepEqual(await listDir(corruptDir), [`${other}.msg`, `${other}.state`]);
    assert.deepEqual(await listDir(queueDir), []);
  });

  it("load() moves a .msg without a seal or an envelope line to corrupt/", async () => {
    const id = newQueueId();
    await writeFile(join(queueDir, `${id}.msg`), "no newline at all");
    const { corrupt } = await spool.load();
    assert.equal(corrupt.length, 1);
    assert.match(corrupt[0]!.reason, /no seal or envelope line/);
  });

  it("load() moves a .msg of the format before seals without its newline to corrupt/", async () => {
    const id = newQueueId();
    await writeFile(join(queueDir, `${id}.msg`), JSON.stringify(makeEnvelope({ id })));
    const { corrupt } = await spool.load();
    assert.equal(corrupt.length, 1);
    assert.match(corrupt[0]!.reason, /no envelope line/);
  });

  it("load() moves a .msg whose name is not a queue ID to corrupt/", async () => {
    await writeFile(join(queueDir, "NOT-AN-ID.msg"), JSON.stringify(makeEnvelope()) + "\n");
    const { corrupt } = await spool.load();
    assert.equal(corrupt.length, 1);
    assert.match(corrupt[0]!.reason, /not a queue ID/);
    assert.deepEqual(await listDir(corruptDir), ["NOT-AN-ID.msg"]);
  });

  it("load() moves files that are neither .msg nor .state to corrupt/", async () => {
    await writeFile(join(queueDir, "stray.txt"), "?");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.deepEqual(corrupt, [{
      file: join(corruptDir, "stray.txt"),
      reason: "not a spool file",
    }]);
  });

  it("load() keeps good items when others are corrupt", async () => {
    const good = makeEnvelope();
    await spoolMessage(spool, good, "fine\r\n");
    await writeFile(join(queueDir, `${newQueueId()}.msg`), "garbage\n");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items.map((i) => i.envelope.id), [good.id]);
    assert.equal(corrupt.length, 1);
  });

  it("load() removes an orphan .state file when its message is gone", async () => {
    const id = newQueueId();
    await writeFile(join(queueDir, `${id}.state`), "{}");
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.deepEqual(corrupt, []);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual(await listDir(corruptDir), []);
  });

  it("saveState() then load() returns the saved state", async () => {
    const envelope = makeEnvelope({ to: ["alice@ex.test", "bob@ex.test"] });
    await spoolMessage(spool, envelope, "m\r\n");
    const state: DeliveryState = {
      v: 1,
      recipients: [
        { address: "alice@ex.test", status: "sent", attempts: 1 },
        { address: "bob@ex.test", status: "pending", attempts: 2, last_error: "busy" },
      ],
      next_attempt_at: "2026-01-02T04:00:00.000Z",
    };
    await spool.saveState(envelope.id, state);
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`, `${envelope.id}.state`]);
    assert.deepEqual(await listDir(incomingDir), []);
    const { items, corrupt } = await spool.load();
    assert.deepEqual(corrupt, []);
    assert.equal(items.length, 1);
    assert.deepEqual(items[0]!.state, state);
  });

  it("saveState() replaces an earlier state", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    const pending: DeliveryState = {
      v: 1,
      recipients: [{ address: "alice@ex.test", status: "pending", attempts: 1 }],
    };
    await spool.saveState(envelope.id, pending);
    const failed: DeliveryState = {
      v: 1,
      recipients: [{ address: "alice@ex.test", status: "failed", attempts: 2, last_error: "x" }],
    };
    await spool.saveState(envelope.id, failed);
    assert.deepEqual((await spool.load()).items[0]!.state, failed);
  });

  it("load() moves an item to corrupt/ when its state names other recipients", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    await spool.saveState(envelope.id, {
      v: 1,
      recipients: [{ address: "mallory@ex.test", status: "pending", attempts: 0 }],
    });
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.match(corrupt[0]!.reason, /recipients differ/);
    assert.deepEqual(await listDir(corruptDir), [`${envelope.id}.msg`, `${envelope.id}.state`]);
  });

  it("load() moves an item to corrupt/ when its state file is not valid", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    await writeFile(join(queueDir, `${envelope.id}.state`), '{"v":1,"recipients":"nope"}');
    const { items, corrupt } = await spool.load();
    assert.deepEqual(items, []);
    assert.match(corrupt[0]!.reason, /delivery state is invalid at "recipients"/);
  });

  it("remove() deletes both the message and the state file", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    await spool.saveState(envelope.id, {
      v: 1,
      recipients: [{ address: "alice@ex.test", status: "pending", attempts: 1 }],
    });
    await spool.remove(envelope.id);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual((await spool.load()).items, []);
  });

  it("remove() after a restart deletes the state file the earlier run saved", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    await spool.saveState(envelope.id, {
      v: 1,
      recipients: [{ address: "alice@ex.test", status: "pending", attempts: 1 }],
    });
    const restarted = new Spool(dataDir);
    await restarted.init();
    const { items } = await restarted.load();
    assert.equal(items.length, 1);
    await restarted.remove(envelope.id);
    await restarted.close();
    assert.deepEqual(await listDir(queueDir), []);
  });

  it("remove() of a message that never had a state file removes just the message", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    const unlinked: string[] = [];
    const unlink = durabilityFs.unlink;
    durabilityFs.unlink = (path) => {
      unlinked.push(String(path));
      return unlink(path);
    };
    try {
      await spool.remove(envelope.id);
    } finally {
      durabilityFs.unlink = unlink;
    }
    assert.deepEqual(unlinked, [join(queueDir, `${envelope.id}.msg`)]);
    assert.deepEqual(await listDir(queueDir), []);
  });

  it("remove() succeeds when there is no state file or nothing at all", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "m\r\n");
    await spool.remove(envelope.id);
    await spool.remove(envelope.id);
    assert.deepEqual(await listDir(queueDir), []);
  });
});
