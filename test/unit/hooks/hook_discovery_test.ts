/**
 * What counts as a change of a module hook: any file of its folder, at any
 * depth, its installed packages too (the hook can import them all, and the
 * sandbox lets it read them). Before, the fingerprint stopped four levels
 * down and skipped `node_modules`, so such a change neither reloaded the
 * hook nor reset its state.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { discoverHook, HOOK_TREE } from "../../../src/hooks/hook_discovery.ts";
import { Logger } from "../../../src/log/mod.ts";
import { MAX_ENTRIES, type TreeWatch, watchTree } from "../../../src/policy/watcher.ts";
import { pollUntil } from "../../support/within.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("discoverHook: the files of a module hook", () => {
  let root: string;
  let n = 0;
  const lines: string[] = [];
  const logger = new Logger("info", (line) => lines.push(line));
  before(async () => {
    root = await makeTempDir("postern-hook-discovery-");
  });
  after(async () => {
    await removeDir(root);
  });

  /** A hooks folder with a post-data module hook and `files` in its folder. */
  async function hooks(files: Record<string, string>): Promise<string> {
    const dir = join(root, `hooks${n++}`);
    await mkdir(join(dir, "post-data"), { recursive: true });
    await writeFile(join(dir, "post-data.ts"), "export default () => undefined;\n");
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(dir, "post-data", path, ".."), { recursive: true });
      await writeFile(join(dir, "post-data", path), text);
    }
    return dir;
  }

  const printOf = async (dir: string) => (await discoverHook(dir, "post-data", logger))?.print;

  for (const path of ["a/b/c/d/e/f/helper.ts", "node_modules/pkg/index.ts", "shallow.ts"]) {
    it(`a change to ${path} is a change of the hook`, async () => {
      const dir = await hooks({ [path]: "export const V = 1;\n" });
      const before = await printOf(dir);
      assert.ok(before);
      await writeFile(join(dir, "post-data", path), "export const V = 22;\n");
      assert.notEqual(await printOf(dir), before);
    });
  }

  it("a change under .git is not", async () => {
    const dir = await hooks({ ".git/HEAD": "ref: a\n" });
    const before = await printOf(dir);
    await writeFile(join(dir, "post-data", ".git", "HEAD"), "ref: refs/heads/longer\n");
    assert.equal(await printOf(dir), before);
  });

  it("a folder past the watcher's entry budget is said to be watched only in part", async () => {
    const dir = await hooks({});
    await mkdir(join(dir, "post-data", "many"));
    for (let i = 0; i <= MAX_ENTRIES; i++) {
      writeFileSync(join(dir, "post-data", "many", `${i}`), "");
    }
    lines.length = 0;
    await printOf(dir);
    assert.equal(lines.filter((l) => /hook folder too big to watch whole/.test(l)).length, 1);
  });

  it("the runner's watch of the hooks folder sees a change deep in a hook's folder", async () => {
    const dir = await hooks({ "a/b/c/d/e/f/helper.ts": "export const V = 1;\n" });
    let changes = 0;
    let watch: TreeWatch | undefined;
    try {
      watch = watchTree(dir, () => changes++, { ...HOOK_TREE, pollMs: 50 });
      // Let it take its first look before the change.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await writeFile(join(dir, "post-data", "a/b/c/d/e/f/helper.ts"), "export const V = 22;\n");
      await pollUntil(() => changes > 0, "the change to be noticed", 20_000);
    } finally {
      watch?.close();
    }
  });
});
