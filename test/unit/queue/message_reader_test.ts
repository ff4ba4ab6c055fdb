/**
 * Reading a spooled message back for delivery: a small file in one read, a
 * large one streamed in bounded chunks, and every byte either way; the
 * spool records the file's size that picks the way.
 */

import assert from "node:assert/strict";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Spool } from "../../../src/queue/mod.ts";
import { readSpoolFile, WHOLE_READ_BYTES } from "../../../src/queue/message_reader.ts";
import { collectBytes, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";

/** `length` bytes of a pattern that shows any shift or repeat. */
function patterned(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + (i >> 8)) & 0xff;
  return bytes;
}

async function chunksOf(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return chunks;
}

describe("readSpoolFile", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("postern-reader-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("reads a small file from the offset to its end in one chunk", async () => {
    const path = join(dir, "small");
    const bytes = patterned(5000);
    await writeFile(path, bytes);
    const chunks = await chunksOf(readSpoolFile(path, 1234, bytes.byteLength));
    assert.equal(chunks.length, 1);
    const chunk = chunks[0]!;
    // A Buffer is a Uint8Array; compared as one.
    assert.deepEqual(
      new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      bytes.subarray(1234),
    );
  });

  it("streams a large file in chunks no larger than the whole-read limit, every byte in order", async () => {
    const path = join(dir, "large");
    const bytes = patterned(WHOLE_READ_BYTES * 3 + 777);
    await writeFile(path, bytes);
    const chunks = await chunksOf(readSpoolFile(path, 100, bytes.byteLength));
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    for (const chunk of chunks) assert.ok(chunk.byteLength <= WHOLE_READ_BYTES);
    assert.deepEqual(
      await collectBytes(readSpoolFile(path, 100, bytes.byteLength)),
      bytes.subarray(100),
    );
  });

  it("reads to the end of the file whatever size it was told: the size only picks the way", async () => {
    const path = join(dir, "grown");
    const bytes = patterned(WHOLE_READ_BYTES + 4096);
    await writeFile(path, bytes);
    // Told small (one read), told nothing (a stream): the same bytes.
    assert.deepEqual(await collectBytes(readSpoolFile(path, 10, 100)), bytes.subarray(10));
    assert.deepEqual(await collectBytes(readSpoolFile(path, 10, undefined)), bytes.subarray(10));
  });

  it("yields nothing for an offset at the end of a small file", async () => {
    const path = join(dir, "empty-tail");
    await writeFile(path, patterned(64));
    assert.deepEqual(await chunksOf(readSpoolFile(path, 64, 64)), []);
  });

  it("opens nothing before the first read, then reports a missing file", async () => {
    const path = join(dir, "absent");
    const reader = readSpoolFile(path, 0, 10);
    await writeFile(path, "now here");
    assert.equal(new TextDecoder().decode(await collectBytes(reader)), "now here");
    await assert.rejects(collectBytes(readSpoolFile(join(dir, "never"), 0, 10)), {
      code: "ENOENT",
    });
  });
});

describe("Spool records the size of each message file", () => {
  let dataDir: string;
  let spool: Spool;
  beforeEach(async () => {
    dataDir = await makeTempDir("postern-reader-spool-");
    spool = new Spool(dataDir);
    await spool.init();
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(dataDir);
  });

  const messagePath = (id: string) => join(dataDir, "spool", "queue", `${id}.msg`);

  for (
    const [name, size] of [["small", 300], [
      "larger than one read",
      WHOLE_READ_BYTES + 1000,
    ]] as const
  ) {
    it(`${name}: the size at commit and at start-up is the file's, and the message reads back whole`, async () => {
      const envelope = makeEnvelope();
      const body = patterned(size);
      const committed = await spoolMessage(spool, envelope, body);
      const onDisk = (await stat(messagePath(envelope.id))).size;
      assert.equal(committed.fileBytes, onDisk);
      assert.deepEqual(await collectBytes(spool.openMessage(committed)), body);

      await spool.close();
      spool = new Spool(dataDir);
      await spool.init();
      const { items } = await spool.load();
      assert.equal(items.length, 1);
      assert.equal(items[0]!.fileBytes, onDisk);
      assert.deepEqual(await collectBytes(spool.openMessage(items[0]!)), body);
    });
  }

  it("a message whose added headers did not fit its room (a copy) records the copy's size", async () => {
    const envelope = makeEnvelope();
    const writer = await spool.receive(envelope);
    await writer.write(new TextEncoder().encode("Subject: s\r\n\r\nbody\r\n"));
    const head = new TextEncoder().encode(`X-Big: ${"x".repeat(9000)}\r\n`);
    const item = await writer.commit(head);
    assert.equal(item.fileBytes, (await stat(messagePath(envelope.id))).size);
    const text = new TextDecoder().decode(await collectBytes(spool.openMessage(item)));
    assert.ok(text.startsWith("X-Big: xxx"), text.slice(0, 20));
    assert.ok(text.endsWith("Subject: s\r\n\r\nbody\r\n"));
  });
});
