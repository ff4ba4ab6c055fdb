/**
 * readRegularFile(): only a missing file is absent, only a regular file is
 * read, and nothing blocks (a FIFO is refused, not waited on).
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readRegularFile } from "../../src/regular_file.ts";
import { makeTempDir, removeDir } from "./helpers.ts";

describe("readRegularFile", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("postern-regular-");
  });
  after(async () => {
    await chmod(join(dir, "locked"), 0o755).catch(() => {});
    await removeDir(dir);
  });

  it("readRegularFile() reads a regular file, also through a symlink", async () => {
    await writeFile(join(dir, "users"), "alice\n");
    await symlink("users", join(dir, "link"));
    assert.equal(readRegularFile(join(dir, "users")), "alice\n");
    assert.equal(readRegularFile(join(dir, "link")), "alice\n");
  });

  it("readRegularFile() returns undefined only for a file that is not there", () => {
    assert.equal(readRegularFile(join(dir, "missing")), undefined);
    assert.equal(readRegularFile(join(dir, "no-folder", "users")), undefined);
  });

  it("readRegularFile() throws for a path it cannot follow (a symlink loop, a file as folder)", async () => {
    await symlink("loop", join(dir, "loop"));
    assert.throws(() => readRegularFile(join(dir, "loop")), /ELOOP/);
    await writeFile(join(dir, "plain"), "x");
    assert.throws(() => readRegularFile(join(dir, "plain", "users")), /ENOTDIR/);
  });

  it("readRegularFile() refuses a FIFO at once, a device and a folder", () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    // No writer: a plain read would wait here for good.
    assert.throws(() => readRegularFile(fifo), /^Error: not a regular file \(a FIFO\)$/);
    assert.throws(() => readRegularFile("/dev/null"), /not a regular file \(a device\)/);
    assert.throws(() => readRegularFile(dir), /not a regular file \(a folder\)/);
  });
});
