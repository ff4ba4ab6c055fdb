import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { consistentLoad } from "../../../src/policy/consistent.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("consistentLoad", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("postern-consistent-");
    await writeFile(join(dir, "users"), "alice\n");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("returns what one read of an unchanged tree gave", async () => {
    let reads = 0;
    const load = consistentLoad(() => Promise.resolve(++reads), dir);
    assert.equal(await load(), 1);
  });

  it("reads again when a file changed during the read (an in-place write)", async () => {
    let reads = 0;
    const load = consistentLoad(async () => {
      reads++;
      // The first read sees the file truncated by a writer, which then writes it.
      if (reads === 1) {
        await writeFile(join(dir, "users"), "");
        await writeFile(join(dir, "users"), "alice\nbob\n");
        return "empty";
      }
      return "complete";
    }, dir);
    assert.equal(await load(), "complete");
    assert.equal(reads, 2);
  });

  it("gives up on a tree that changes during every read", async () => {
    let reads = 0;
    const load = consistentLoad(async () => {
      await writeFile(join(dir, "users"), `alice\n${"x".repeat(++reads)}\n`);
      return reads;
    }, dir);
    await assert.rejects(load(), /kept changing while it was read/);
    assert.equal(reads, 5);
  });

  it("ignores changes under an ignored path", async () => {
    let reads = 0;
    const load = consistentLoad(
      async () => {
        await writeFile(join(dir, "spool-file"), String(++reads));
        return reads;
      },
      dir,
      (path) => path.endsWith("spool-file"),
    );
    assert.equal(await load(), 1);
  });
});
