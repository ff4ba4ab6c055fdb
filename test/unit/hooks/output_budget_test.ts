import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../../src/config/mod.ts";
import { countLines, OutputBudget } from "../../../src/hooks/output_budget.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

/** A budget of 3 lines and 100 bytes a second on a clock the test moves. */
function budget() {
  const clock = { now: 0 };
  return {
    clock,
    budget: new OutputBudget({ linesPerSecond: 3, bytesPerSecond: 100 }, () => clock.now),
  };
}

describe("OutputBudget", () => {
  it("admit() logs lines within the budget, drops the first one past it as over, then drops", () => {
    const { budget: b } = budget();
    assert.deepEqual([b.admit(10), b.admit(10), b.admit(10), b.admit(10), b.admit(10)], [
      "log",
      "log",
      "log",
      "over",
      "drop",
    ]);
    assert.equal(b.dropping, true);
    assert.deepEqual(b.takeDropped(), { lines: 2, bytes: 20 });
    assert.deepEqual(b.takeDropped(), { lines: 0, bytes: 0 });
  });

  it("admit() goes over on bytes as well as on lines", () => {
    const { budget: b } = budget();
    assert.equal(b.admit(60), "log");
    assert.equal(b.admit(60), "over");
  });

  it("stays dropping while every second brings more than the budget, however long", () => {
    const { clock, budget: b } = budget();
    for (let i = 0; i < 4; i++) b.admit(10);
    for (let second = 1; second <= 30; second++) {
      clock.now = second * 1000 + 1;
      b.drop(50, 5000);
      assert.equal(b.dropping, true, `second ${second}`);
      assert.equal(b.takeEnded(), undefined);
    }
    assert.deepEqual(b.takeDropped(), { lines: 1 + 30 * 50, bytes: 10 + 30 * 5000 });
  });

  it("ends a flood after a whole second within the budget, reports it once, and logs again", () => {
    const { clock, budget: b } = budget();
    for (let i = 0; i < 10; i++) b.admit(10);
    clock.now = 1500;
    b.drop(100, 1000);
    clock.now = 2100; // the window 1000-2000 brought 100 lines: still a flood
    assert.equal(b.dropping, true);
    b.admit(10);
    clock.now = 3100; // the window 2000-3000 brought one line: calm
    assert.equal(b.dropping, false);
    assert.deepEqual(b.takeEnded(), { lines: 7 + 100 + 1, bytes: 70 + 1000 + 10, seconds: 3 });
    assert.equal(b.takeEnded(), undefined);
    assert.equal(b.admit(10), "log");
  });

  it("ends a flood when the output stops altogether", () => {
    const { clock, budget: b } = budget();
    for (let i = 0; i < 10; i++) b.admit(10);
    clock.now = 2500;
    assert.equal(b.dropping, false);
    assert.ok(b.takeEnded());
  });

  it("takeEnded(true) ends a flood in progress (the worker is gone)", () => {
    const { budget: b } = budget();
    for (let i = 0; i < 5; i++) b.admit(10);
    assert.deepEqual(b.takeEnded(true), { lines: 2, bytes: 20, seconds: 1 });
  });

  it("starts each second afresh when within the budget", () => {
    const { clock, budget: b } = budget();
    for (let second = 0; second < 5; second++) {
      clock.now = second * 1000;
      assert.deepEqual([b.admit(30), b.admit(30), b.admit(30)], ["log", "log", "log"]);
    }
  });
});

describe("countLines", () => {
  it("countLines() counts line feeds", () => {
    const encoder = new TextEncoder();
    assert.equal(countLines(encoder.encode("")), 0);
    assert.equal(countLines(encoder.encode("a\nb\n\nc")), 3);
    assert.equal(countLines(new Uint8Array(65536).fill(10)), 65536);
  });
});

describe("hooks.<hook>.output_* settings", () => {
  async function load(yaml: string) {
    const dir = await makeTempDir("postern-output-");
    try {
      await writeTree(dir, { "postern.yaml": yaml });
      return await loadConfig({ configDir: dir });
    } finally {
      await removeDir(dir);
    }
  }

  it("default to 200 lines and 64 KiB a second, and are set per hook", async () => {
    const config = await load(
      "hooks:\n  alias_exists:\n    output_lines_per_second: 5\n    output_bytes_per_second: 1KiB\n",
    );
    assert.deepEqual(config.hooks.points["post-data"].outputLimits, {
      linesPerSecond: 200,
      bytesPerSecond: 65536,
    });
    assert.deepEqual(config.hooks.points["alias-exists"].outputLimits, {
      linesPerSecond: 5,
      bytesPerSecond: 1024,
    });
  });

  it("refuse a budget of no lines", async () => {
    await assert.rejects(
      load("hooks:\n  post_data:\n    output_lines_per_second: 0\n"),
      (err: unknown) => err instanceof ConfigError && /output_lines_per_second/.test(err.message),
    );
  });
});
