import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { durabilityFs } from "../../../src/queue/fs_calls.ts";
import { DirSyncer, DurableFile, writeFileDurably } from "../../../src/queue/mod.ts";
import { listDir, makeTempDir, removeDir } from "../helpers.ts";

describe("DurableFile", () => {
  let root: string;
  let syncer: DirSyncer;
  let n = 0;
  before(async () => {
    root = await makeTempDir("postern-durable-");
    syncer = new DirSyncer(root);
  });
  afterEach(() => {
    n++;
  });
  after(async () => {
    await syncer.close();
    await removeDir(root);
  });

  const tmp = () => join(root, `t${n}.tmp`);
  const final = () => join(root, `f${n}`);

  it("create() + write() + commit() moves the bytes to the final name", async () => {
    const file = await DurableFile.create(tmp());
    await file.write(new TextEncoder().encode("hello "));
    await file.write(new TextEncoder().encode("world"));
    assert.equal(file.bytes, 11);
    await file.commit(final(), syncer);
    assert.equal(await readFile(final(), "utf8"), "hello world");
    await assert.rejects(stat(tmp()), { code: "ENOENT" });
    assert.equal((await stat(final())).mode & 0o777, 0o600);
  });

  it("commit() succeeds when close(2) reports an error after the fdatasync (the message is in place)", async () => {
    const open = durabilityFs.open;
    durabilityFs.open = (async (...args: Parameters<typeof open>) => {
      const handle = await open(...args);
      return new Proxy(handle, {
        get(target, prop) {
          if (prop === "close") {
            return async () => {
              await target.close();
              throw Object.assign(new Error("I/O error"), { code: "EIO" });
            };
          }
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    }) as typeof open;
    let file: DurableFile;
    try {
      file = await DurableFile.create(tmp());
    } finally {
      durabilityFs.open = open;
    }
    await file.write(new TextEncoder().encode("kept"));
    await file.commit(final(), syncer);
    assert.equal(await readFile(final(), "utf8"), "kept");
  });

  it("truncate() cuts back buffered and flushed bytes; later writes continue at the new end", async () => {
    const file = await DurableFile.create(tmp());
    const enc = (t: string) => new TextEncoder().encode(t);
    await file.write(enc("keep|"));
    await file.write(enc("drop-buffered"));
    await file.truncate(5);
    await file.write(enc("x".repeat(300 * 1024))); // over the flush size: on disk now
    await file.write(enc("tail"));
    await file.flush();
    await file.truncate(5 + 300 * 1024);
    await file.write(enc("|end"));
    assert.equal(file.bytes, 5 + 300 * 1024 + 4);
    await assert.rejects(file.truncate(file.bytes + 1), RangeError);
    await file.commit(final(), syncer);
    assert.equal(await readFile(final(), "utf8"), "keep|" + "x".repeat(300 * 1024) + "|end");
  });

  it("read() gives back what was written from a position, buffered bytes included", async () => {
    const file = await DurableFile.create(tmp());
    // Over one read chunk (64 KiB) and not a multiple of it; the last
    // write stays buffered until read() flushes it.
    const data = new Uint8Array(200_003);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    await file.write(data.subarray(0, 150_000));
    await file.write(data.subarray(150_000));
    const chunks: Uint8Array[] = [];
    for await (const chunk of file.read(1000)) chunks.push(chunk);
    assert.ok(chunks.length >= 3);
    assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), data.subarray(1000));
    // Reading twice, and from the end, works too.
    let again = 0;
    for await (const chunk of file.read(0)) again += chunk.byteLength;
    assert.equal(again, data.length);
    for await (const _ of file.read(data.length)) assert.fail("nothing to read past the end");
    await file.abort();
  });

  it("overwrite() changes the buffer while nothing is written, never the caller's chunk, and the file after", async () => {
    const caller = new TextEncoder().encode("0123456789");
    const file = await DurableFile.create(tmp());
    await file.write(caller);
    await file.overwrite(new TextEncoder().encode("ab"), 3);
    assert.equal(new TextDecoder().decode(caller), "0123456789", "the caller's bytes changed");
    assert.equal(new TextDecoder().decode(file.unwritten()), "012ab56789");
    assert.equal((await stat(tmp())).size, 0, "nothing reaches the file before the flush");
    await file.flush();
    await file.overwrite(new TextEncoder().encode("Z"), 0);
    assert.equal(await readFile(tmp(), "utf8"), "Z12ab56789");
    await assert.rejects(file.overwrite(new TextEncoder().encode("xy"), 9), RangeError);
    await file.commit(final(), syncer);
    assert.equal(await readFile(final(), "utf8"), "Z12ab56789");
  });

  it("write() keeps every byte when writes cross the flush size", async () => {
    const file = await DurableFile.create(tmp());
    const data = new Uint8Array(1024 * 1024 + 17);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256;
    for (let off = 0; off < data.length; off += 100_000) {
      await file.write(data.slice(off, off + 100_000));
    }
    await file.commit(final(), syncer);
    assert.deepEqual(new Uint8Array(await readFile(final())), data);
  });

  it("create() refuses an existing temporary file unless replace is set", async () => {
    await writeFile(tmp(), "leftover that is longer than the new content");
    await assert.rejects(DurableFile.create(tmp()), { code: "EEXIST" });
    const file = await DurableFile.create(tmp(), true);
    await file.write(new TextEncoder().encode("new"));
    await file.commit(final(), syncer);
    assert.equal(await readFile(final(), "utf8"), "new");
  });

  it("abort() removes the temporary file and leaves no final file", async () => {
    const file = await DurableFile.create(tmp());
    await file.write(new TextEncoder().encode("partial"));
    await file.abort();
    await file.abort();
    await assert.rejects(stat(tmp()), { code: "ENOENT" });
    await assert.rejects(stat(final()), { code: "ENOENT" });
  });

  it("writeFileDurably() writes a small file in one call", async () => {
    await writeFileDurably(tmp(), final(), new TextEncoder().encode("{}"), syncer);
    assert.equal(await readFile(final(), "utf8"), "{}");
    assert.equal((await listDir(root)).includes(`t${n}.tmp`), false);
  });

  it("writeFileDurably() removes the temporary file when the rename fails", async () => {
    const missingDir = join(root, "missing", "f");
    await assert.rejects(
      writeFileDurably(tmp(), missingDir, new TextEncoder().encode("x"), syncer),
      { code: "ENOENT" },
    );
    await assert.rejects(stat(tmp()), { code: "ENOENT" });
  });
});
