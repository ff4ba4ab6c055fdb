import assert from "node:assert/strict";
import { chmod, chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  makeConfigDirs,
  replaceConfigFile,
  writeNewConfigFile,
} from "../../../src/config/file_modes.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

// As root (CI), the configuration directory gets another group (nogroup,
// 65534) and files get another owner, as on a real deployment; otherwise
// the caller's own ids are used, which still tells modes and groups apart.
const ROOT = process.getuid?.() === 0;
const GROUP = ROOT ? 65534 : process.getgid?.() ?? 0;

describe("files written into the configuration directory", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir();
    await chmod(dir, 0o750);
    if (ROOT) await chown(dir, 0, GROUP);
  });
  after(async () => {
    await removeDir(dir);
  });

  it("makeConfigDirs() creates missing folders 0750 in the config group, whatever the umask", async () => {
    const old = process.umask(0o077);
    try {
      await makeConfigDirs(dir, join(dir, "domains", "a.test", "dkim"));
    } finally {
      process.umask(old);
    }
    for (const folder of ["domains", "domains/a.test", "domains/a.test/dkim"]) {
      const info = await stat(join(dir, folder));
      assert.equal(info.mode & 0o777, 0o750, folder);
      assert.equal(info.gid, GROUP, folder);
    }
  });

  it("writeNewConfigFile() writes 0640 in the config group; it never overwrites", async () => {
    const path = join(dir, "key.pem");
    await writeNewConfigFile(dir, path, "secret\n");
    const info = await stat(path);
    assert.equal(info.mode & 0o777, 0o640);
    assert.equal(info.gid, GROUP);
    await assert.rejects(writeNewConfigFile(dir, path, "other\n"), { code: "EEXIST" });
    assert.equal(await readFile(path, "utf8"), "secret\n");
  });

  it("replaceConfigFile() gives a new file 0640 in the config group", async () => {
    const path = join(dir, "users");
    await replaceConfigFile(dir, path, "alice\n");
    const info = await stat(path);
    assert.equal(info.mode & 0o777, 0o640);
    assert.equal(info.gid, GROUP);
  });

  it("replaceConfigFile() keeps the owner, group and mode of the file it replaces", async () => {
    const path = join(dir, "kept");
    await mkdir(dir, { recursive: true });
    await writeFile(path, "old\n");
    await chmod(path, 0o604);
    if (ROOT) await chown(path, 65534, 0);
    const before = await stat(path);
    await replaceConfigFile(dir, path, "new\n");
    const after = await stat(path);
    assert.equal(await readFile(path, "utf8"), "new\n");
    assert.equal(after.ino === before.ino, false, "replaced, not written in place");
    assert.deepEqual([after.uid, after.gid, after.mode & 0o7777], [
      before.uid,
      before.gid,
      0o604,
    ]);
  });
});
