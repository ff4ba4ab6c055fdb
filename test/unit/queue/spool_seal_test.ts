/**
 * What a restart finds in queue/ after a crash, file by file: a message
 * still arriving (never acknowledged) is removed, one whose seal does not
 * match its content is moved aside, a sealed one and one of the format
 * before seals are delivered.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { open, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type Envelope, Spool } from "../../../src/queue/mod.ts";
import { OPEN_SEAL, SEAL_BYTES } from "../../../src/queue/seal.ts";
import { collectText, listDir, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";
import { FsRecorder } from "./fs_recorder.ts";

describe("Spool seals at start-up", () => {
  let dataDir: string;
  let spool: Spool;
  let queueDir: string;
  let corruptDir: string;

  beforeEach(async () => {
    dataDir = await makeTempDir("postern-spool-seal-");
    spool = new Spool(dataDir);
    await spool.init();
    queueDir = join(dataDir, "spool", "queue");
    corruptDir = join(dataDir, "spool", "corrupt");
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(dataDir);
  });

  /** A restart: a fresh Spool over the same directory. */
  async function restart() {
    await spool.close();
    spool = new Spool(dataDir);
    await spool.init();
    return await spool.load();
  }

  /** Overwrites `bytes` at `position` of a file, as a torn write leaves it. */
  async function overwrite(path: string, position: number, bytes: Uint8Array): Promise<void> {
    const handle = await open(path, "r+");
    try {
      await handle.write(bytes, 0, bytes.byteLength, position);
    } finally {
      await handle.close();
    }
  }

  it("a message still arriving when the server stopped is removed and reported, not delivered", async () => {
    const envelope = makeEnvelope();
    const writer = await spool.receive(envelope);
    try {
      await writer.write(new TextEncoder().encode("Subject: half\r\n\r\nhalf a mess"));
      await writer.readable();
      // The server stops here: the writer is never committed nor aborted.
      const { items, corrupt, unfinished } = await restart();
      assert.deepEqual(items, []);
      assert.deepEqual(corrupt, []);
      assert.deepEqual(unfinished, [envelope.id]);
      assert.deepEqual(await listDir(queueDir), []);
    } finally {
      // The stopped server's descriptor: closed here (its file is gone already).
      await writer.abort();
    }
  });

  it("an empty file is removed unreported, one whose seal was never written (zeros) counts as unfinished", async () => {
    const empty = makeEnvelope();
    const zeros = makeEnvelope({ received_at: "2026-01-02T03:04:06.000Z" });
    // A spare file never used (spare_files.ts), or a message of which no
    // byte reached the disk: nothing to report.
    await writeFile(join(queueDir, `${empty.id}.msg`), "");
    // A crash can leave the file's size on disk without its first block.
    await writeFile(join(queueDir, `${zeros.id}.msg`), new Uint8Array(SEAL_BYTES + 300));
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual(items, []);
    assert.deepEqual(corrupt, []);
    assert.deepEqual(unfinished, [zeros.id]);
    assert.deepEqual(await listDir(queueDir), []);
  });

  it("a sealed message survives a restart with its bytes", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "Subject: kept\r\n\r\nbody\r\n");
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual(corrupt, []);
    assert.deepEqual(unfinished, []);
    assert.deepEqual(items.map((i) => i.envelope), [envelope]);
    assert.equal(await collectText(spool.openMessage(items[0]!)), "Subject: kept\r\n\r\nbody\r\n");
  });

  it("a sealed message with a byte changed after its envelope is moved to corrupt/", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "Subject: torn\r\n\r\nbody\r\n");
    const path = join(queueDir, `${envelope.id}.msg`);
    const raw = await readFile(path);
    await overwrite(path, raw.byteLength - 3, new TextEncoder().encode("X"));
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual(items, []);
    assert.deepEqual(unfinished, []);
    assert.deepEqual(corrupt.map((c) => c.reason), ["content does not match its seal"]);
    assert.deepEqual(await listDir(corruptDir), [`${envelope.id}.msg`]);
  });

  it("a sealed message whose envelope line was torn is moved to corrupt/, not read as valid", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "Subject: torn\r\n\r\nbody\r\n");
    const path = join(queueDir, `${envelope.id}.msg`);
    // The sector after the seal holds an older envelope line that still parses.
    const older = JSON.stringify({ ...envelope, to: ["mallory@ex.test"] });
    await overwrite(path, SEAL_BYTES, new TextEncoder().encode(older));
    const { items, corrupt } = await restart();
    assert.deepEqual(items, []);
    assert.deepEqual(corrupt.map((c) => c.reason), ["content does not match its seal"]);
  });

  it("a sealed message cut short is moved to corrupt/ with the lengths in the reason", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "Subject: short\r\n\r\nbody\r\n");
    const path = join(queueDir, `${envelope.id}.msg`);
    const size = (await readFile(path)).byteLength;
    await truncate(path, size - 4);
    const { items, corrupt } = await restart();
    assert.deepEqual(items, []);
    const held = size - SEAL_BYTES;
    assert.deepEqual(corrupt.map((c) => c.reason), [
      `sealed for ${held} bytes, holds ${held - 4}`,
    ]);
  });

  it("a file with an open seal and a complete-looking message is still unfinished", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "Subject: whole\r\n\r\nbody\r\n");
    // As if the crash came after the message was written but before its seal.
    await overwrite(join(queueDir, `${envelope.id}.msg`), 0, OPEN_SEAL);
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual(items, []);
    assert.deepEqual(corrupt, []);
    assert.deepEqual(unfinished, [envelope.id]);
  });

  it("a message in the format before seals (envelope line first) is delivered as before", async () => {
    const envelope = makeEnvelope();
    const path = join(queueDir, `${envelope.id}.msg`);
    await writeFile(path, `${JSON.stringify(envelope)}    \nSubject: old\r\n\r\nbody\r\n`);
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual(corrupt, []);
    assert.deepEqual(unfinished, []);
    assert.deepEqual(items.map((i) => i.envelope), [envelope]);
    assert.equal(await collectText(spool.openMessage(items[0]!)), "Subject: old\r\n\r\nbody\r\n");
  });

  /** A message acknowledged and retried once: its state file saved. */
  async function retriedMessage(): Promise<Envelope> {
    const envelope = makeEnvelope();
    const item = await spoolMessage(spool, envelope, `X-Pad: ${"p".repeat(5000)}\r\n\r\nbody\r\n`);
    item.state.recipients[0]!.attempts = 1;
    await spool.saveState(envelope.id, item.state);
    return envelope;
  }

  it("an acknowledged message whose first block reads as zeros is moved to corrupt/, not removed", async () => {
    const envelope = await retriedMessage();
    // The disk lost the block: the seal reads as zeros, as for a file whose
    // first write never landed. The state file, saved only after the
    // commit, tells the two apart.
    await overwrite(join(queueDir, `${envelope.id}.msg`), 0, new Uint8Array(4096));
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual(items, []);
    assert.deepEqual(unfinished, []);
    assert.deepEqual(corrupt, [{
      file: join(corruptDir, `${envelope.id}.msg`),
      reason: "its head is blank (no seal), yet its delivery state file shows it was acknowledged",
    }]);
    assert.deepEqual(await listDir(corruptDir), [`${envelope.id}.msg`, `${envelope.id}.state`]);
    assert.deepEqual(await listDir(queueDir), []);
  });

  it("an acknowledged message emptied or with an open seal is moved to corrupt/ with its state file", async () => {
    const emptied = await retriedMessage();
    const reopened = await retriedMessage();
    await truncate(join(queueDir, `${emptied.id}.msg`), 0);
    await overwrite(join(queueDir, `${reopened.id}.msg`), 0, OPEN_SEAL);
    const { items, corrupt, unfinished } = await restart();
    assert.deepEqual([items, unfinished], [[], []]);
    assert.deepEqual(corrupt.map((c) => c.reason).sort(), [
      "it is empty (no seal), yet its delivery state file shows it was acknowledged",
      "its seal is open, yet its delivery state file shows it was acknowledged",
    ]);
    assert.deepEqual(
      await listDir(corruptDir),
      [emptied.id, reopened.id].sort().flatMap((id) => [`${id}.msg`, `${id}.state`]),
    );
  });

  it("a zeroed file without a state file still counts as unfinished", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, `X-Pad: ${"p".repeat(5000)}\r\n\r\nbody\r\n`);
    await overwrite(join(queueDir, `${envelope.id}.msg`), 0, new Uint8Array(4096));
    // Nothing written after the commit says it was acknowledged: a crash
    // while it arrived leaves the same file.
    const { corrupt, unfinished } = await restart();
    assert.deepEqual([corrupt, unfinished], [[], [envelope.id]]);
  });
});

describe("Spool seals in memory", () => {
  let dataDir: string;
  let spool: Spool;
  let recorder: FsRecorder;

  beforeEach(async () => {
    dataDir = await makeTempDir("postern-spool-seal-");
    spool = new Spool(dataDir);
    await spool.init();
    recorder = new FsRecorder();
    recorder.install();
  });
  afterEach(async () => {
    recorder.restore();
    await spool.close();
    await removeDir(dataDir);
  });

  it("a small message read by nothing is sealed in memory: the content, then the seal, no read back", async () => {
    const envelope = makeEnvelope();
    await spoolMessage(spool, envelope, "Subject: small\r\n\r\nbody\r\n");
    const path = join(dataDir, "spool", "queue", `${envelope.id}.msg`);
    const calls = recorder.events.filter((e) => e.phase === "end" && e.path === path);
    assert.deepEqual(
      calls.map((e) => e.call).filter((c) => c === "write" || c === "read"),
      ["write", "write"],
      recorder.describe(),
    );
    assert.match(new TextDecoder().decode(OPEN_SEAL), /^OPEN {3}-{16} -{64}\n$/);
    const raw = await readFile(path);
    const digest = createHash("sha256").update(raw.subarray(SEAL_BYTES)).digest("hex");
    assert.equal(
      raw.subarray(0, SEAL_BYTES).toString(),
      `SEALED ${String(raw.byteLength - SEAL_BYTES).padStart(16, "0")} ${digest}\n`,
    );
  });

  it("headers added after DATA by what did not read the message (a hook, the checks) stay in memory: one content write, no read", async () => {
    const envelope = makeEnvelope();
    const path = join(dataDir, "spool", "queue", `${envelope.id}.msg`);
    const writer = await spool.receive(envelope);
    const body = "Subject: hooked\r\n\r\nbody\r\n";
    await writer.write(new TextEncoder().encode(body));
    await writer.prepend(new TextEncoder().encode("Authentication-Results: x; none\r\n"));
    await writer.prepend(new TextEncoder().encode("X-Hook: ok\r\n"));
    const item = await writer.commit();
    const calls = recorder.events.filter((e) => e.phase === "end" && e.path === path);
    assert.deepEqual(
      calls.map((e) => e.call).filter((c) => c === "write" || c === "read"),
      ["write", "write"],
      recorder.describe(),
    );
    assert.equal(
      await collectText(spool.openMessage(item)),
      `X-Hook: ok\r\nAuthentication-Results: x; none\r\n${body}`,
    );
    const loaded = await new Spool(dataDir).load();
    assert.deepEqual(loaded.corrupt, []);
    assert.equal(
      await collectText(spool.openMessage(loaded.items[0]!)),
      await collectText(spool.openMessage(item)),
    );
  });

  it("headers added after the message was read go to the file, with the same result as in memory", async () => {
    const body = new TextEncoder().encode("Subject: same\r\n\r\nbody\r\n");
    const head = new TextEncoder().encode("X-Hook: ok\r\n");
    const queue = join(dataDir, "spool", "queue");
    const inMemory = makeEnvelope();
    const a = await spool.receive(inMemory);
    await a.write(body);
    await a.prepend(head);
    await a.commit();
    const readFirst = makeEnvelope();
    const b = await spool.receive(readFirst);
    await b.write(body);
    await b.readable();
    await b.prepend(head);
    await b.commit();
    const readFirstPath = join(queue, `${readFirst.id}.msg`);
    assert.ok(
      recorder.events.some((e) => e.call === "read" && e.path === readFirstPath),
      `the seal was not computed from the file:\n${recorder.describe()}`,
    );
    const x = await readFile(join(queue, `${inMemory.id}.msg`), "latin1");
    const y = await readFile(readFirstPath, "latin1");
    assert.equal(x.slice(SEAL_BYTES).replaceAll(inMemory.id, readFirst.id), y.slice(SEAL_BYTES));
    assert.deepEqual((await new Spool(dataDir).load()).corrupt, []);
  });

  it("a write that stops after the content leaves an open seal: unfinished, not damaged", async () => {
    const envelope = makeEnvelope();
    const path = join(dataDir, "spool", "queue", `${envelope.id}.msg`);
    // The content's write goes through; the seal's (the second write) fails,
    // as when the process is killed between the two.
    recorder.fail("write", path, Object.assign(new Error("I/O error"), { code: "EIO" }), 1);
    const writer = await spool.receive(envelope);
    try {
      await writer.write(new TextEncoder().encode("Subject: cut\r\n\r\nbody\r\n"));
      await assert.rejects(writer.commit(), { code: "EIO" });
      assert.match(await readFile(path, "latin1"), /^OPEN {3}/);
      const { items, corrupt, unfinished } = await new Spool(dataDir).load();
      assert.deepEqual([items, corrupt, unfinished], [[], [], [envelope.id]]);
    } finally {
      await writer.abort();
    }
  });

  it("a message read before its commit is sealed from the file, with the same result", async () => {
    const body = "Subject: read\r\n\r\nbody\r\n";
    const inMemory = makeEnvelope();
    await spoolMessage(spool, inMemory, body);
    const readFirst = makeEnvelope();
    assert.notEqual(readFirst.id, inMemory.id);
    const writer = await spool.receive(readFirst);
    await writer.write(new TextEncoder().encode(body));
    await writer.readable();
    recorder.events.length = 0;
    await writer.commit();
    const readFirstPath = join(dataDir, "spool", "queue", `${readFirst.id}.msg`);
    assert.ok(
      recorder.events.some((e) => e.call === "read" && e.path === readFirstPath),
      `the seal was not computed from the file:\n${recorder.describe()}`,
    );
    const queue = join(dataDir, "spool", "queue");
    const a = await readFile(join(queue, `${inMemory.id}.msg`), "latin1");
    const b = await readFile(join(queue, `${readFirst.id}.msg`), "latin1");
    // Same layout and same seal but for the envelope's ID.
    assert.equal(a.length, b.length);
    assert.equal(a.slice(SEAL_BYTES).replaceAll(inMemory.id, readFirst.id), b.slice(SEAL_BYTES));
    const loaded = await new Spool(dataDir).load();
    assert.deepEqual(loaded.corrupt, []);
    assert.equal(loaded.items.length, 2);
  });
});
