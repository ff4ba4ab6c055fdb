import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { quickOpen } from "../../../src/queue/quick_fs.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

describe("quick_fs", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("postern-quick-fs-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("writes, reads and truncates at once: the file has changed when the call returns", async () => {
    const path = join(dir, "m");
    const handle = await quickOpen(path, "wx+", 0o600);
    const written = handle.write(bytes("xxhello"), 2, 5, 0);
    // Not awaited yet: an I/O thread would not have run the write by now.
    assert.equal(readFileSync(path, "utf8"), "hello");
    assert.deepEqual(await written, { bytesWritten: 5 });
    const truncated = handle.truncate(4);
    assert.equal(readFileSync(path, "utf8"), "hell");
    await truncated;
    const buffer = new Uint8Array(8);
    const read = handle.read(buffer, 1, 7, 1);
    assert.equal(new TextDecoder().decode(buffer.subarray(1, 4)), "ell");
    assert.deepEqual(await read, { bytesRead: 3 });
    await handle.datasync();
    await handle.sync();
    await handle.close();
  });

  it("reports errors as rejected promises, never as throws", async () => {
    const reader = await (await quickOpen(join(dir, "m"), "wx+", 0o600)).close().then(() =>
      quickOpen(join(dir, "m"), "r")
    );
    let failed: Promise<unknown> | undefined;
    assert.doesNotThrow(() => failed = reader.write(bytes("x"), 0, 1, 0));
    await assert.rejects(failed!, (err: NodeJS.ErrnoException) => err.code === "EBADF");
    await reader.close();
    await assert.rejects(
      quickOpen(join(dir, "m"), "wx+", 0o600),
      (err: NodeJS.ErrnoException) => err.code === "EEXIST",
    );
    await assert.rejects(
      quickOpen(join(dir, "absent"), "r"),
      (err: NodeJS.ErrnoException) => err.code === "ENOENT",
    );
  });

  it("touches no descriptor once closed: the number may be another file's by then", async () => {
    const closed = await quickOpen(join(dir, "first"), "wx+", 0o600);
    await closed.close();
    // Likely given the same descriptor number by the kernel.
    const other = await quickOpen(join(dir, "second"), "wx+", 0o600);
    for (
      const call of [
        () => closed.write(bytes("x"), 0, 1, 0),
        () => closed.read(new Uint8Array(1), 0, 1, 0),
        () => closed.truncate(0),
        () => closed.datasync(),
        () => closed.sync(),
        () => closed.close(),
      ]
    ) {
      await assert.rejects(call(), (err: NodeJS.ErrnoException) => err.code === "EBADF");
    }
    // The other file is untouched and still open.
    assert.deepEqual(await other.write(bytes("ok"), 0, 2, 0), { bytesWritten: 2 });
    await other.close();
    assert.equal(readFileSync(join(dir, "second"), "utf8"), "ok");
  });

  it("creates files with the mode asked for, and opens them again to read at once", async () => {
    const handle = await quickOpen(join(dir, "a"), "wx+", 0o600);
    await handle.write(bytes("data"), 0, 4, 0);
    await handle.close();
    assert.equal(statSync(join(dir, "a")).mode & 0o777, 0o600);
    const reader = await quickOpen(join(dir, "a"), "r");
    const buffer = new Uint8Array(4);
    assert.deepEqual(await reader.read(buffer, 0, 4, 0), { bytesRead: 4 });
    assert.equal(new TextDecoder().decode(buffer), "data");
    await assert.rejects(
      reader.write(bytes("x"), 0, 1, 0),
      (err: NodeJS.ErrnoException) => err.code === "EBADF",
    );
    await reader.close();
  });

  it("syncs a directory opened read-only", async () => {
    const handle = await quickOpen(dir, "r");
    await handle.sync();
    await handle.close();
  });
});
