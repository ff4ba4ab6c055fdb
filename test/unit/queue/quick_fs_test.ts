import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { quickOpen, quickRename, quickUnlink } from "../../../src/queue/quick_fs.ts";
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
    const handle = await quickOpen(join(dir, "m"), "wx+", 0o600);
    await handle.close();
    let failed: Promise<unknown> | undefined;
    assert.doesNotThrow(() => failed = handle.write(bytes("x"), 0, 1, 0));
    await assert.rejects(failed!, (err: NodeJS.ErrnoException) => err.code === "EBADF");
    await assert.rejects(handle.close(), (err: NodeJS.ErrnoException) => err.code === "EBADF");
    await assert.rejects(
      quickOpen(join(dir, "m"), "wx+", 0o600),
      (err: NodeJS.ErrnoException) => err.code === "EEXIST",
    );
    await assert.rejects(
      quickOpen(join(dir, "absent"), "r"),
      (err: NodeJS.ErrnoException) => err.code === "ENOENT",
    );
    await assert.rejects(
      quickUnlink(join(dir, "absent")),
      (err: NodeJS.ErrnoException) => err.code === "ENOENT",
    );
  });

  it("creates files with the mode asked for, and renames and unlinks them", async () => {
    const handle = await quickOpen(join(dir, "a"), "wx+", 0o600);
    await handle.write(bytes("data"), 0, 4, 0);
    await handle.close();
    await quickRename(join(dir, "a"), join(dir, "b"));
    assert.equal(readFileSync(join(dir, "b"), "utf8"), "data");
    assert.equal(statSync(join(dir, "b")).mode & 0o777, 0o600);
    await quickUnlink(join(dir, "b"));
    assert.throws(() => statSync(join(dir, "b")), { code: "ENOENT" });
  });

  it("syncs a directory opened read-only", async () => {
    const handle = await quickOpen(dir, "r");
    await handle.sync();
    await handle.close();
  });
});
