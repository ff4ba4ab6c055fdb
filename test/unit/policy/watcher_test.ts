import assert from "node:assert/strict";
import { statSync, writeFileSync } from "node:fs";
import {
  chmod,
  mkdir,
  readFile,
  rename,
  rm,
  symlink,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { fingerprint, type TreeWatch, watchTree } from "../../../src/policy/watcher.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `condition` every 10 ms; fails after `limitMs`. */
async function eventually(condition: () => boolean, what: string, limitMs = 10_000) {
  for (let waited = 0; waited <= limitMs; waited += 10) {
    if (condition()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Calls of an onChange callback. */
interface Calls {
  n: number;
  fn: () => void;
}
function calls(): Calls {
  const c: Calls = {
    n: 0,
    fn: () => {
      c.n++;
    },
  };
  return c;
}

/** Waits until `c.n` has not moved for `quietMs` (bounded). */
async function quiet(c: Calls, quietMs: number): Promise<void> {
  let seen = c.n;
  let stillFor = 0;
  for (let i = 0; i < 1000 && stillFor < quietMs; i++) {
    await sleep(10);
    if (c.n === seen) {
      stillFor += 10;
    } else {
      seen = c.n;
      stillFor = 0;
    }
  }
  assert.ok(stillFor >= quietMs, "the watch never went quiet");
}

describe("watchTree", () => {
  let dir: string;
  let root: string;
  let watches: TreeWatch[];

  beforeEach(async () => {
    dir = await makeTempDir("postern-watch-");
    root = join(dir, "hooks");
    watches = [];
  });
  afterEach(async () => {
    for (const w of watches) w.close();
    await removeDir(dir);
  });

  /**
   * Starts a watch and proves it live: a sentinel file is rewritten until the
   * watch reports a change, then the watch is left to settle and the count
   * reset. Changes made after this are measured against a known baseline.
   */
  async function startWatch(
    pollMs = 50,
    debounceMs = 20,
  ): Promise<Calls> {
    const c = calls();
    watches.push(watchTree(root, c.fn, { pollMs, debounceMs }));
    const sentinel = join(root, ".sentinel");
    const wait = Math.min(pollMs, 500) + 2 * debounceMs;
    for (let i = 1; i <= 20 && c.n === 0; i++) {
      await writeFile(sentinel, "x".repeat(i));
      for (let waited = 0; waited < wait && c.n === 0; waited += 10) await sleep(10);
    }
    assert.ok(c.n > 0, "the watch never reported the sentinel");
    // With slow polling, only events (and their debounce) can fire.
    const period = pollMs >= 1000 ? debounceMs : pollMs;
    await quiet(c, Math.max(200, 3 * period + debounceMs));
    c.n = 0;
    return c;
  }

  it("watchTree() fires after a file is written in place", async () => {
    await writeTree(root, { "post-data.ts": "export default () => 1;\n" });
    const c = await startWatch();
    await writeFile(join(root, "post-data.ts"), "export default () => 2;\n"); // same size
    await eventually(() => c.n >= 1, "a change after an in-place write");
  });

  it("watchTree() fires after a file is replaced by rename", async () => {
    await writeTree(root, { "post-data.ts": "old\n" });
    const c = await startWatch();
    await writeFile(join(root, ".post-data.ts.tmp"), "new\n");
    await rename(join(root, ".post-data.ts.tmp"), join(root, "post-data.ts"));
    await eventually(() => c.n >= 1, "a change after rename-over");
  });

  it("watchTree() fires after a file is deleted and created again", async () => {
    await writeTree(root, { "alias-exists.ts": "same\n" });
    const c = await startWatch();
    await unlink(join(root, "alias-exists.ts"));
    await writeFile(join(root, "alias-exists.ts"), "same\n");
    await eventually(() => c.n >= 1, "a change after delete and recreate");
  });

  it("watchTree() fires after a file appears in a new subfolder", async () => {
    await writeTree(root, { "post-data.ts": "x\n" });
    const c = await startWatch();
    await mkdir(join(root, "post-data", "lists"), { recursive: true });
    await writeFile(join(root, "post-data", "lists", "block.txt"), "spam.test\n");
    await eventually(() => c.n >= 1, "a change after a new subfolder file");
  });

  it("watchTree() fires after a file in an existing subfolder changes", async () => {
    await writeTree(root, { "post-data/lists/block.txt": "a\n" });
    const c = await startWatch();
    await writeFile(join(root, "post-data", "lists", "block.txt"), "a\nb\n");
    await eventually(() => c.n >= 1, "a change deep in the tree");
  });

  it("watchTree() fires after a ConfigMap-style ..data symlink swap", async () => {
    // Both versions exist before the watch; only the ..data link moves, so
    // nothing changes unless links are followed.
    await writeTree(root, {
      "..2026_01_01/post-data.ts": "export default () => 1;\n",
      "..2026_01_02/post-data.ts": "export default () => 2;\n",
    });
    await symlink("..2026_01_01", join(root, "..data"));
    await symlink(join("..data", "post-data.ts"), join(root, "post-data.ts"));
    const c = await startWatch();
    await symlink("..2026_01_02", join(root, "..data_tmp"));
    await rename(join(root, "..data_tmp"), join(root, "..data"));
    assert.equal(await readFile(join(root, "post-data.ts"), "utf8"), "export default () => 2;\n");
    await eventually(() => c.n >= 1, "a change after the symlink swap");
  });

  it("watchTree() fires when the root appears after the watch started, and after later edits", async () => {
    const c = calls();
    watches.push(watchTree(root, c.fn, { pollMs: 50, debounceMs: 20 }));
    await sleep(300); // the first comparisons see no root
    assert.equal(c.n, 0);
    await writeTree(root, { "post-data.ts": "export default () => 1;\n" });
    await eventually(() => c.n >= 1, "a change when the root appears");
    await quiet(c, 250);
    const seen = c.n;
    await writeFile(join(root, "post-data.ts"), "export default () => 22;\n");
    await eventually(() => c.n > seen, "a change to a file of the new root");
  });

  it("watchTree() fires once for a burst of edits", async () => {
    await writeTree(root, { "a.ts": "a\n", "b.ts": "b\n", "sub/c.txt": "c\n" });
    // No polling: only file system events and the debounce drive it.
    const debounceMs = 250;
    const c = await startWatch(60_000, debounceMs);
    // Edits a few ms apart, each seen as events before the next; the
    // debounce must fold them into one comparison. A gap longer than the
    // debounce (a stalled machine) may legitimately split the burst, so
    // such gaps are counted.
    let longGaps = 0;
    let last = Date.now();
    for (let i = 0; i < 12; i++) {
      await writeFile(join(root, ["a.ts", "b.ts", "sub/c.txt"][i % 3]!), `edit ${i}\n`);
      if (i === 6) writeFileSync(join(root, "new.ts"), "new\n");
      await sleep(5);
      const now = Date.now();
      if (now - last >= debounceMs) longGaps++;
      last = now;
    }
    await eventually(() => c.n >= 1, "a change after the burst");
    await quiet(c, 2 * debounceMs + 100);
    assert.ok(c.n >= 1 && c.n <= 1 + longGaps, `${c.n} calls with ${longGaps} long gaps`);
  });

  it("watchTree() does not fire while nothing changes", async () => {
    await writeTree(root, { "a.ts": "a\n" });
    const c = await startWatch();
    await readFile(join(root, "a.ts"));
    await sleep(300);
    assert.equal(c.n, 0);
  });

  it("close() stops the watch", async () => {
    await writeTree(root, { "a.ts": "a\n" });
    const c = await startWatch();
    watches.pop()!.close();
    await writeFile(join(root, "a.ts"), "changed after close\n");
    await writeFile(join(root, "b.ts"), "new after close\n");
    await sleep(400); // several poll intervals and debounces
    assert.equal(c.n, 0);
  });
});

describe("fingerprint", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("postern-fingerprint-");
    await writeTree(dir, {
      "post-data.ts": "export default () => 1;\n",
      "post-data/lists/block.txt": "spam.test\n",
    });
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("fingerprint() returns the same string for an unchanged tree", async () => {
    const a = await fingerprint(dir);
    await readFile(join(dir, "post-data.ts"));
    assert.equal(await fingerprint(dir), a);
    assert.ok(a.includes(join(dir, "post-data", "lists", "block.txt")));
  });

  it("fingerprint() skips .git and node_modules, which cannot crowd out the files that matter", async () => {
    await writeTree(dir, {
      ".git/objects/aa/1": "x",
      "post-data/node_modules/pkg/index.js": "x",
    });
    const a = await fingerprint(dir);
    assert.ok(!a.includes(".git"));
    assert.ok(!a.includes("node_modules"));
    await writeFile(join(dir, ".git/objects/aa/1"), "changed");
    assert.equal(await fingerprint(dir), a);
    // A ConfigMap's "..data" folder is not skipped.
    await writeTree(dir, { "..data/postern.yaml": "x" });
    assert.ok((await fingerprint(dir)).includes("..data"));
  });

  it("fingerprint() changes when a file's size changes", async () => {
    const a = await fingerprint(dir);
    await writeFile(join(dir, "post-data.ts"), "export default () => 100;\n");
    assert.notEqual(await fingerprint(dir), a);
  });

  it("fingerprint() changes when only a file's modification time changes", async () => {
    const a = await fingerprint(dir);
    const when = new Date("2020-01-01T00:00:00Z");
    await utimes(join(dir, "post-data.ts"), when, when);
    assert.notEqual(await fingerprint(dir), a);
  });

  it("fingerprint() changes when a file is replaced by one of the same size and time", async () => {
    const path = join(dir, "post-data.ts");
    const when = new Date("2020-01-01T00:00:00Z");
    await utimes(path, when, when);
    const a = await fingerprint(dir);
    await writeFile(join(dir, "tmp"), "export default () => 2;\n");
    await utimes(join(dir, "tmp"), when, when);
    await rename(join(dir, "tmp"), path);
    assert.notEqual(await fingerprint(dir), a);
  });

  it("fingerprint() changes when a file is rewritten in place at the same size and its time put back", async () => {
    // An editor or `cp --preserve`, `rsync -t`, a restore from a backup: size,
    // inode, mode and modification time as before. Only the change time
    // (which no one can set) moves.
    const path = join(dir, "post-data.ts");
    const when = new Date("2020-01-01T00:00:00Z");
    await utimes(path, when, when);
    const before = statSync(path).ctimeMs;
    const a = await fingerprint(dir);
    // The kernel stamps ctime from a coarse clock: rewrite until a tick has
    // passed (bounded), as any edit a person makes is.
    for (let i = 0; i < 200 && statSync(path).ctimeMs === before; i++) {
      await sleep(5);
      await writeFile(path, "export default () => 2;\n");
      await utimes(path, when, when);
    }
    assert.notEqual(statSync(path).ctimeMs, before, "the change time never moved");
    assert.notEqual(await fingerprint(dir), a);
  });

  it("fingerprint() changes when a file or folder is added or removed", async () => {
    const a = await fingerprint(dir);
    await mkdir(join(dir, "alias-resolve"));
    const b = await fingerprint(dir);
    assert.notEqual(b, a);
    await rm(join(dir, "post-data", "lists", "block.txt"));
    assert.notEqual(await fingerprint(dir), b);
  });

  it("fingerprint() changes when a symlink is pointed at another file", async () => {
    await writeTree(dir, { "v1/x.ts": "one\n", "v2/x.ts": "two\n" });
    await symlink("v1", join(dir, "..data"));
    const a = await fingerprint(dir);
    await symlink("v2", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    assert.notEqual(await fingerprint(dir), a);
  });

  it("fingerprint() changes when a file's permissions change (chmod +x)", async () => {
    // An executable hook hooks/<point> is only used when it is executable,
    // so a chmod +x must count as a change.
    await writeFile(join(dir, "alias-exists"), "#!/bin/sh\nexit 0\n", { mode: 0o644 });
    const a = await fingerprint(dir);
    await chmod(join(dir, "alias-exists"), 0o755);
    assert.notEqual(await fingerprint(dir), a);
  });

  it("fingerprint() marks a dangling symlink, and a missing root as absent", async () => {
    await symlink(join(dir, "nowhere"), join(dir, "broken.ts"));
    assert.ok((await fingerprint(dir)).includes(`${join(dir, "broken.ts")}:dangling`));
    const missing = join(dir, "missing");
    assert.equal(await fingerprint(missing), `${missing}:absent`);
    assert.equal(await fingerprint(missing), await fingerprint(missing));
  });

  it("fingerprint() does not look below maxDepth", async () => {
    const shallow = await fingerprint(dir, 0);
    await writeFile(join(dir, "post-data", "lists", "block.txt"), "changed below depth 0\n");
    assert.equal(await fingerprint(dir, 0), shallow);
    assert.ok(shallow.includes(`${join(dir, "post-data")}/`));
    assert.ok(!shallow.includes("block.txt"));
  });
});
