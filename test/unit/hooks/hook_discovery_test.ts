/**
 * What counts as a change of a module hook: any file of its folder, at any
 * depth but in `node_modules` and `.git` (the hook can import them all, and
 * the sandbox lets it read them). Before, the fingerprint stopped four
 * levels down, so a change below neither reloaded the hook nor reset its
 * state.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { discoverHook, watchHooks } from "../../../src/hooks/hook_discovery.ts";
import { Logger } from "../../../src/log/mod.ts";
import { MAX_ENTRIES, type TreeWatch } from "../../../src/policy/watcher.ts";
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

  for (const path of ["a/b/c/d/e/f/helper.ts", "shallow.ts"]) {
    it(`a change to ${path} is a change of the hook`, async () => {
      const dir = await hooks({ [path]: "export const V = 1;\n" });
      const before = await printOf(dir);
      assert.ok(before);
      await writeFile(join(dir, "post-data", path), "export const V = 22;\n");
      assert.notEqual(await printOf(dir), before);
    });
  }

  for (const path of [".git/HEAD", "node_modules/pkg/index.ts", "a/node_modules/pkg/index.ts"]) {
    it(`a change to ${path} is not: .git and installed packages are not walked`, async () => {
      const dir = await hooks({ [path]: "export const V = 1;\n" });
      const before = await printOf(dir);
      await writeFile(join(dir, "post-data", path), "export const V = 22;\n");
      assert.equal(await printOf(dir), before);
    });
  }

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

  /** Runs `change` under the runner's watch of `dir`; resolves once the watch noticed it. */
  async function noticed(dir: string, change: () => Promise<void>): Promise<void> {
    let changes = 0;
    const watch: TreeWatch = watchHooks(dir, () => changes++);
    try {
      // Let it take its first look before the change.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await change();
      await pollUntil(() => changes > 0, "the change to be noticed", 20_000);
    } finally {
      watch.close();
    }
  }

  it("the runner's watch sees a change deep in a hook's folder", async () => {
    const dir = await hooks({ "a/b/c/d/e/f/helper.ts": "export const V = 1;\n" });
    await noticed(dir, () => writeFile(join(dir, "post-data", "a/b/c/d/e/f/helper.ts"), "V\n"));
  });

  it("the runner's watch sees a hook's file beside its folder past the entry budget", async () => {
    const dir = await hooks({});
    await mkdir(join(dir, "post-data", "many"));
    for (let i = 0; i <= MAX_ENTRIES; i++) {
      writeFileSync(join(dir, "post-data", "many", `${i}`), "");
    }
    // The folder sorts before its own file, and used to take the whole budget.
    await noticed(dir, () => writeFile(join(dir, "post-data.ts"), "export default () => {};\n"));
  });
});
