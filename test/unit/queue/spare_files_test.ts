import assert from "node:assert/strict";
import { open, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { mkdir } from "node:fs/promises";
import { durabilityFs } from "../../../src/queue/fs_calls.ts";
import { SpareFiles } from "../../../src/queue/spare_files.ts";
import { listDir, makeTempDir, removeDir, until } from "../helpers.ts";

describe("SpareFiles", () => {
  let root: string;
  let spareDir: string;
  let targetDir: string;
  let pool: SpareFiles;

  beforeEach(async () => {
    root = await makeTempDir("postern-spare-");
    spareDir = join(root, "spare");
    targetDir = join(root, "incoming");
    await mkdir(spareDir);
    await mkdir(targetDir);
    pool = new SpareFiles(spareDir, { target: 3 });
  });
  afterEach(async () => {
    await pool.close();
    await removeDir(root);
  });

  it("creates the file when no spare is ready, then fills the pool to its target", async () => {
    const handle = await pool.take(join(targetDir, "a"));
    await handle.close();
    assert.deepEqual(await listDir(targetDir), ["a"]);
    await until(() => pool.ready === 3);
    assert.equal((await listDir(spareDir)).length, 3);
  });

  it("gives a spare: empty, mode 0600, at the new path only, and written through the handle", async () => {
    await (await pool.take(join(targetDir, "first"))).close();
    await until(() => pool.ready === 3);
    const spares = await listDir(spareDir);
    const path = join(targetDir, "second");
    const handle = await pool.take(path);
    const info = await stat(path);
    assert.equal(info.size, 0);
    assert.equal(info.mode & 0o777, 0o600);
    assert.equal(info.nlink, 1, "the spare has no other name");
    await handle.write(new TextEncoder().encode("hello"), 0, 5, 0);
    await handle.close();
    assert.equal(await readFile(path, "utf8"), "hello");
    // One spare went, the others are still there (and more may be made).
    const left = await listDir(spareDir);
    assert.equal(spares.filter((name) => !left.includes(name)).length, 1);
  });

  it("with no spare ready, creates the file exclusively: an existing file is kept (EEXIST)", async () => {
    const path = join(targetDir, "taken");
    await writeFile(path, "a message being received");
    await assert.rejects(pool.take(path), (err: unknown) => {
      assert.equal((err as { code?: string }).code, "EEXIST");
      return true;
    });
    assert.equal(await readFile(path, "utf8"), "a message being received");
  });

  it("falls back to a new file when the spare was removed under it", async () => {
    await (await pool.take(join(targetDir, "first"))).close();
    await until(() => pool.ready === 3);
    for (const name of await listDir(spareDir)) await unlink(join(spareDir, name));
    const path = join(targetDir, "second");
    const handle = await pool.take(path);
    await handle.write(new TextEncoder().encode("kept"), 0, 4, 0);
    await handle.close();
    assert.equal(await readFile(path, "utf8"), "kept");
  });

  it("when a spare cannot be renamed (a failing disk), creates the file once, no loop", async () => {
    await (await pool.take(join(targetDir, "first"))).close();
    await until(() => pool.ready === 3);
    const rename = durabilityFs.rename;
    let renames = 0;
    durabilityFs.rename = () => {
      renames++;
      return Promise.reject(Object.assign(new Error("I/O error"), { code: "EIO" }));
    };
    try {
      const path = join(targetDir, "second");
      const handle = await pool.take(path);
      await handle.close();
      assert.equal((await stat(path)).size, 0);
    } finally {
      durabilityFs.rename = rename;
    }
    assert.equal(renames, 1);
  });

  it("close() removes the spares and makes no more", async () => {
    await (await pool.take(join(targetDir, "first"))).close();
    await until(() => pool.ready === 3);
    await pool.close();
    assert.deepEqual(await listDir(spareDir), []);
    const handle = await pool.take(join(targetDir, "after-close"));
    await handle.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await listDir(spareDir), []);
  });

  it("clean() removes what an earlier run left", async () => {
    await writeFile(join(spareDir, "spare-1"), "");
    await (await open(join(spareDir, "spare-9"), "w")).close();
    await pool.clean();
    assert.deepEqual(await listDir(spareDir), []);
  });

  it("with target 0 keeps no spares", async () => {
    const none = new SpareFiles(spareDir, { target: 0 });
    await (await none.take(join(targetDir, "a"))).close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await listDir(spareDir), []);
    await none.close();
  });
});
