import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { HEAD_RESERVE, Spool, type SpoolWriter } from "../../../src/queue/spool.ts";
import { SEAL_BYTES } from "../../../src/queue/seal.ts";
import type { Envelope } from "../../../src/queue/mod.ts";
import { collectBytes, listDir, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope } from "./fixtures.ts";

const encoder = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Header lines of exactly `bytes` bytes, each ending in CRLF. */
function headOf(bytes: number): Uint8Array {
  let text = "";
  let i = 0;
  while (bytes - text.length > 40) {
    const line = `X-Hook-${String(i++).padStart(4, "0")}: ${"v".repeat(20)}\r\n`;
    text += line;
  }
  const rest = bytes - text.length;
  text += `X-L: ${"z".repeat(rest - 7)}\r\n`;
  assert.equal(text.length, bytes);
  return encoder.encode(text);
}

/** A binary-safe message of `bytes` bytes that spans several flushes when large. */
function messageOf(bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const prefix = encoder.encode("Subject: test\r\n\r\n");
  for (let i = 0; i < bytes; i++) out[i] = i < prefix.length ? prefix[i]! : 32 + (i * 7) % 90;
  return out;
}

/**
 * Splits the raw spool file: its seal line, the envelope line after it
 * (up to its LF), and what follows.
 */
function splitFile(raw: Uint8Array): { seal: string; line: string; rest: Uint8Array } {
  const seal = new TextDecoder().decode(raw.subarray(0, SEAL_BYTES));
  assert.match(seal, /^(SEALED \d{16} [0-9a-f]{64}|OPEN {3}-{16} -{64})\n$/);
  const newline = raw.indexOf(10, SEAL_BYTES);
  assert.ok(newline > SEAL_BYTES, "the file has an envelope line");
  return {
    seal,
    line: new TextDecoder().decode(raw.subarray(SEAL_BYTES, newline)),
    rest: raw.subarray(newline + 1),
  };
}

describe("SpoolWriter head", () => {
  let dataDir: string;
  let spool: Spool;
  let queueDir: string;
  let incomingDir: string;

  beforeEach(async () => {
    dataDir = await makeTempDir("postern-spool-head-");
    spool = new Spool(dataDir);
    await spool.init();
    queueDir = join(dataDir, "spool", "queue");
    incomingDir = join(dataDir, "spool", "incoming");
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(dataDir);
  });

  async function receive(envelope: Envelope, ...chunks: Uint8Array[]): Promise<SpoolWriter> {
    const writer = await spool.receive(envelope);
    for (const chunk of chunks) await writer.write(chunk);
    return writer;
  }

  /** Reads the queue back with a fresh Spool, as after a restart. */
  async function reload() {
    const again = new Spool(dataDir);
    try {
      const loaded = await again.load();
      const messages = [];
      for (const item of loaded.items) messages.push(await collectBytes(again.openMessage(item)));
      return { ...loaded, messages };
    } finally {
      await again.close();
    }
  }

  it("readable() flushes what was written and points after the reserved head room", async () => {
    const envelope = makeEnvelope();
    const message = encoder.encode("Subject: hi\r\n\r\nbody\r\n");
    const writer = await receive(envelope, message.subarray(0, 5), message.subarray(5));
    const { path, offset } = await writer.readable();
    assert.equal(path, join(queueDir, `${envelope.id}.msg`));
    const line = JSON.stringify(envelope);
    assert.equal(offset, SEAL_BYTES + encoder.encode(line).byteLength + 1 + HEAD_RESERVE);
    const raw = new Uint8Array(await readFile(path));
    assert.deepEqual(raw.subarray(offset), message);
    const { seal, line: first } = splitFile(raw);
    assert.match(seal, /^OPEN /, "not sealed before commit");
    assert.equal(SEAL_BYTES + first.length + 1, offset);
    assert.equal(first.trimEnd(), line);
    assert.match(first.slice(line.length), /^ +$/);
    await writer.abort();
  });

  it("readable() includes data written after an earlier call", async () => {
    const writer = await receive(makeEnvelope(), encoder.encode("one\r\n"));
    await writer.readable();
    await writer.write(encoder.encode("two\r\n"));
    const { path, offset } = await writer.readable();
    const raw = await readFile(path);
    assert.equal(raw.subarray(offset).toString(), "one\r\ntwo\r\n");
    await writer.abort();
  });

  it("commit(head) writes the head in place: padded envelope line, then head, then message", async () => {
    const envelope = makeEnvelope({ to: ["alice@ex.test", "bob@ex.test"] });
    const message = encoder.encode("Received: by us\r\nSubject: hi\r\n\r\nbody\r\n");
    const head = encoder.encode("X-Spam: no\r\nX-Checked: yes\r\n");
    const writer = await receive(envelope, message);
    const { path } = await writer.readable();
    const inode = (await stat(path)).ino;
    const item = await writer.commit(head);

    const final = join(queueDir, `${envelope.id}.msg`);
    assert.equal((await stat(final)).ino, inode, "the file was not copied");
    const raw = new Uint8Array(await readFile(final));
    const lineBytes = encoder.encode(JSON.stringify(envelope)).byteLength;
    // The file keeps its size: the head took some of the reserved room.
    assert.equal(raw.byteLength, SEAL_BYTES + lineBytes + 1 + HEAD_RESERVE + message.byteLength);
    const { seal, line, rest } = splitFile(raw);
    assert.deepEqual(JSON.parse(line), envelope);
    assert.equal(line.trimEnd(), JSON.stringify(envelope));
    assert.deepEqual(rest, concat(head, message));
    assert.equal(item.dataOffset, SEAL_BYTES + line.length + 1);
    const sealed = raw.subarray(SEAL_BYTES);
    const digest = createHash("sha256").update(sealed).digest("hex");
    assert.equal(seal, `SEALED ${String(sealed.byteLength).padStart(16, "0")} ${digest}\n`);
    assert.deepEqual(item.envelope, envelope);
    assert.deepEqual(item.state.recipients.map((r) => r.address), envelope.to);
    assert.deepEqual(await collectBytes(spool.openMessage(item)), concat(head, message));
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`]);
  });

  it("commit(head) counts the envelope line in bytes when it holds UTF-8", async () => {
    const envelope = makeEnvelope({
      from: "josé@exämple.test",
      to: ["ünï@ex.test"],
      smtputf8: true,
    });
    const message = encoder.encode("Subject: ü\r\n\r\nbody\r\n");
    const head = encoder.encode("X-Hook: ü\r\n");
    const writer = await receive(envelope, message);
    const item = await writer.commit(head);
    const raw = new Uint8Array(await readFile(join(queueDir, `${envelope.id}.msg`)));
    assert.equal(raw[item.dataOffset - 1], 10, "the data starts right after the line's LF");
    assert.deepEqual(raw.subarray(item.dataOffset), concat(head, message));
    assert.deepEqual(JSON.parse(splitFile(raw).line), envelope);
    const loaded = await reload();
    assert.deepEqual(loaded.items.map((i) => i.envelope), [envelope]);
    assert.deepEqual(loaded.messages, [concat(head, message)]);
  });

  it("Spool.load() reads a message committed with a head back with the same envelope and bytes", async () => {
    const envelope = makeEnvelope();
    const message = messageOf(10_000);
    const head = encoder.encode("X-Hook: 1\r\n");
    const writer = await receive(envelope, message);
    const item = await writer.commit(head);
    const loaded = await reload();
    assert.deepEqual(loaded.corrupt, []);
    assert.equal(loaded.items.length, 1);
    assert.deepEqual(loaded.items[0]!.envelope, envelope);
    assert.equal(loaded.items[0]!.dataOffset, item.dataOffset);
    assert.equal(loaded.items[0]!.recovered, true);
    assert.deepEqual(loaded.messages[0], concat(head, message));
  });

  it("commit(head) fills the reserved room exactly when the head is HEAD_RESERVE bytes", async () => {
    const envelope = makeEnvelope();
    const message = encoder.encode("Subject: x\r\n\r\nbody\r\n");
    const head = headOf(HEAD_RESERVE);
    const writer = await receive(envelope, message);
    const inode = (await stat((await writer.readable()).path)).ino;
    const item = await writer.commit(head);
    const final = join(queueDir, `${envelope.id}.msg`);
    assert.equal((await stat(final)).ino, inode, "the file was not copied");
    const { line, rest } = splitFile(new Uint8Array(await readFile(final)));
    assert.equal(line, JSON.stringify(envelope), "no padding is left");
    assert.deepEqual(rest, concat(head, message));
    assert.deepEqual(await collectBytes(spool.openMessage(item)), concat(head, message));
    assert.deepEqual((await reload()).messages, [concat(head, message)]);
  });

  it("commit(head) copies the message when the head is one byte over HEAD_RESERVE, with the same result", async () => {
    const envelope = makeEnvelope();
    const message = encoder.encode("Subject: x\r\n\r\nbody\r\n");
    const head = headOf(HEAD_RESERVE + 1);
    const writer = await receive(envelope, message);
    const inode = (await stat((await writer.readable()).path)).ino;
    const item = await writer.commit(head);
    const final = join(queueDir, `${envelope.id}.msg`);
    assert.notEqual((await stat(final)).ino, inode, "a copy was made");
    const { line, rest } = splitFile(new Uint8Array(await readFile(final)));
    assert.deepEqual(JSON.parse(line), envelope);
    assert.deepEqual(rest, concat(head, message));
    assert.equal(item.dataOffset, SEAL_BYTES + line.length + 1);
    assert.deepEqual(await collectBytes(spool.openMessage(item)), concat(head, message));
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`]);
    const loaded = await reload();
    assert.deepEqual(loaded.corrupt, []);
    assert.deepEqual(loaded.items.map((i) => i.envelope), [envelope]);
    assert.deepEqual(loaded.messages, [concat(head, message)]);
  });

  it("a second head after a copy makes a second copy, and the message keeps every byte", async () => {
    // Submitted mail: a post-data hook's large head, then the DKIM signature at commit.
    const envelope = makeEnvelope();
    const message = encoder.encode("Subject: twice\r\n\r\nbody\r\n");
    const first = headOf(HEAD_RESERVE + 10);
    const second = encoder.encode("DKIM-Signature: v=1; a=rsa-sha256\r\n");
    const writer = await receive(envelope, message);
    await writer.prepend(first);
    const item = await writer.commit(second);
    const expected = concat(second, first, message);
    assert.deepEqual(await collectBytes(spool.openMessage(item)), expected);
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`]);
    const loaded = await reload();
    assert.deepEqual(loaded.corrupt, []);
    assert.deepEqual(loaded.messages, [expected]);
  });

  it("commit(head) copies a large message completely behind a large head", async () => {
    const envelope = makeEnvelope();
    const message = messageOf(1_300_000); // several flushes of buffered data
    const chunks: Uint8Array[] = [];
    for (let off = 0; off < message.byteLength; off += 50_000) {
      chunks.push(message.subarray(off, off + 50_000));
    }
    const head = headOf(100_000);
    const writer = await receive(envelope, ...chunks);
    const item = await writer.commit(head);
    const expected = concat(head, message);
    assert.deepEqual(await collectBytes(spool.openMessage(item)), expected);
    assert.deepEqual(await listDir(incomingDir), []);
    const loaded = await reload();
    assert.deepEqual(loaded.corrupt, []);
    assert.deepEqual(loaded.messages, [expected]);
  });

  it("commit() without a head leaves the padded envelope line and the message as written", async () => {
    for (const head of [undefined, new Uint8Array(0)]) {
      const envelope = makeEnvelope();
      const message = encoder.encode("Subject: plain\r\n\r\nbody\r\n");
      const writer = await receive(envelope, message);
      const { path, offset } = await writer.readable();
      const before = new Uint8Array(await readFile(path));
      const item = await writer.commit(head);
      const raw = new Uint8Array(await readFile(join(queueDir, `${envelope.id}.msg`)));
      // Only the seal changed.
      assert.deepEqual(raw.subarray(SEAL_BYTES), before.subarray(SEAL_BYTES), String(head));
      assert.match(splitFile(raw).seal, /^SEALED /);
      assert.equal(item.dataOffset, offset);
      assert.deepEqual(await collectBytes(spool.openMessage(item)), message);
    }
    const loaded = await reload();
    assert.equal(loaded.items.length, 2);
    assert.deepEqual(loaded.corrupt, []);
    assert.deepEqual(await listDir(incomingDir), []);
  });

  it("abort() removes the partial message from queue/, and nothing is left", async () => {
    const envelope = makeEnvelope();
    const writer = await receive(envelope, encoder.encode("Subject: x\r\n\r\n"));
    await writer.readable();
    assert.deepEqual(await listDir(queueDir), [`${envelope.id}.msg`]);
    await writer.abort();
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual((await reload()).items, []);
  });

  it("abort() removes a message that was never written to", async () => {
    const writer = await spool.receive(makeEnvelope());
    await writer.abort();
    assert.deepEqual(await listDir(incomingDir), []);
    assert.deepEqual(await listDir(queueDir), []);
  });
});
