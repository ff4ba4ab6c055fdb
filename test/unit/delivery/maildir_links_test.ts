/**
 * A hostile mailbox: symbolic links where Maildir delivery writes, and a
 * set-up that failed once. Whoever can write in the mail root must not be
 * able to have a message written over another file or into another
 * directory (Postern may run as root), and a cause the operator mends must
 * not keep the mailbox deferred until a restart.
 */

import assert from "node:assert/strict";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Maildir } from "../../../src/delivery/mod.ts";
import { chunksOf, listDir, makeTempDir, removeDir, retain } from "../helpers.ts";

describe("Maildir delivery and symbolic links", () => {
  let root: string;
  let n = 0;
  before(async () => {
    root = await makeTempDir("postern-maildir-links-");
  });
  after(async () => {
    await removeDir(root);
  });

  /** A mailbox under a domain folder, as the mail root lays them out, and a victim beside it. */
  async function layout(): Promise<{ box: string; victim: string; elsewhere: string }> {
    const base = join(root, `case${n++}`);
    const box = join(base, "mail", "example.test", "alice");
    const elsewhere = join(base, "elsewhere");
    await mkdir(elsewhere, { recursive: true });
    const victim = join(elsewhere, "victim");
    await writeFile(victim, "VICTIM");
    return { box, victim, elsewhere };
  }

  it("a link in place of the tmp file is removed, and what it named is left alone", async () => {
    const { box, victim } = await layout();
    await mkdir(join(box, "tmp"), { recursive: true });
    await symlink(victim, join(box, "tmp", "m1"));
    assert.equal(await retain(new Maildir(box)).deliver("m1", chunksOf("the message"), true), true);
    assert.equal(await readFile(victim, "utf8"), "VICTIM");
    assert.equal(await readFile(join(box, "new", "m1"), "utf8"), "the message");
    assert.deepEqual(await listDir(join(box, "tmp")), []);
  });

  for (const folder of ["tmp", "new", "", ".."]) {
    const what = folder === ""
      ? "the mailbox"
      : folder === ".."
      ? "its domain's folder"
      : `${folder}/`;
    it(`a link in place of ${what} defers the delivery, and nothing is written where it points`, async () => {
      const { box, elsewhere } = await layout();
      const maildir = retain(new Maildir(box));
      assert.equal(await maildir.deliver("first", chunksOf("one"), false), true);
      // Swapped in after the mailbox was set up: checked at every delivery.
      const target = join(box, folder);
      const away = join(elsewhere, "moved");
      await rm(away, { recursive: true, force: true });
      await mkdir(away, { recursive: true });
      for (const sub of ["tmp", "new", "cur", "alice"]) await mkdir(join(away, sub));
      await rm(target, { recursive: true });
      await symlink(away, target);
      await assert.rejects(
        maildir.deliver("second", chunksOf("two"), false),
        (err: NodeJS.ErrnoException) => err.code === "ENOTDIR" && /symbolic link/.test(err.message),
      );
      for (const sub of ["tmp", "new", "cur", "alice"]) {
        assert.deepEqual(await listDir(join(away, sub)), [], `${sub} of the link's target`);
      }
      assert.deepEqual((await listDir(away)).sort(), ["alice", "cur", "new", "tmp"]);
    });
  }

  for (const folder of ["", ".."]) {
    const what = folder === "" ? "the mailbox" : "its domain's folder";
    it(`a first delivery makes no folder through a link in place of ${what}`, async () => {
      const { box, elsewhere } = await layout();
      const away = join(elsewhere, "moved");
      await mkdir(away, { recursive: true });
      await mkdir(join(box, ".."), { recursive: true });
      await rm(join(box, folder), { recursive: true, force: true });
      await symlink(away, join(box, folder));
      await assert.rejects(
        retain(new Maildir(box)).deliver("m", chunksOf("x"), false),
        (err: NodeJS.ErrnoException) => err.code === "ENOTDIR" && /symbolic link/.test(err.message),
      );
      assert.deepEqual(await listDir(away), []);
    });
  }

  it("a mailbox removed after its first delivery is made again at the next", async () => {
    const { box } = await layout();
    const maildir = retain(new Maildir(box));
    assert.equal(await maildir.deliver("one", chunksOf("1"), false), true);
    await rm(box, { recursive: true });
    assert.equal(await maildir.deliver("two", chunksOf("2"), false), true);
    assert.deepEqual(await listDir(join(box, "new")), ["two"]);
  });

  it("a set-up that failed is tried again at the next delivery", async () => {
    const { box } = await layout();
    await mkdir(box, { recursive: true });
    await writeFile(join(box, "tmp"), "a file where tmp/ belongs");
    const maildir = retain(new Maildir(box));
    await assert.rejects(maildir.deliver("m", chunksOf("x"), false));
    await rm(join(box, "tmp"));
    assert.equal(await maildir.deliver("m", chunksOf("x"), false), true);
    assert.equal(await readFile(join(box, "new", "m"), "utf8"), "x");
  });
});
