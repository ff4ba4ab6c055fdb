/**
 * The descriptor limit as Postern reads it: the soft RLIMIT_NOFILE, which
 * both runtimes raise to the hard limit when they start; and the count of
 * descriptors open.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { open } from "node:fs/promises";
import { resolve } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { openDescriptorCount, openFileLimit } from "../../../src/runtime/mod.ts";
import { parseProcLimits } from "../../../src/runtime/limits.ts";

const RUNTIME = resolve(fileURLToPath(import.meta.url), "../../../../src/runtime/mod.ts");

/** Runs `script` on the runtime running the tests, from bash after `shell`. */
function runScript(shell: string, script: string): Promise<string> {
  const runtime = "Bun" in globalThis
    ? [process.execPath, "-e", script]
    : [process.execPath, "eval", script];
  return new Promise((res, rej) => {
    execFile(
      "bash",
      ["-c", `${shell}; exec "$@"`, "bash", ...runtime],
      { timeout: 30_000 },
      (err, stdout, stderr) => err ? rej(new Error(`${err.message}\n${stderr}`)) : res(stdout),
    );
  });
}

describe("runtime limits", () => {
  it("parseProcLimits() reads the soft limit of Max open files", () => {
    const text = [
      "Limit                     Soft Limit           Hard Limit           Units     ",
      "Max processes             63448                63448                processes ",
      "Max open files            1024                 524288               files     ",
      "Max locked memory         8388608              8388608              bytes     ",
    ].join("\n");
    assert.equal(parseProcLimits(text), 1024);
    assert.equal(
      parseProcLimits("Max open files            unlimited            unlimited            files"),
      Infinity,
    );
    assert.equal(parseProcLimits("Max processes 10 10 processes"), undefined);
  });

  it("openFileLimit() gives the soft limit as the runtime raised it to the hard limit", async () => {
    const out = await runScript(
      "ulimit -Sn 256; echo $(ulimit -Hn)",
      `import { openFileLimit } from ${JSON.stringify(RUNTIME)}; console.log(openFileLimit());`,
    );
    const [hard, read] = out.trim().split("\n");
    assert.equal(read, hard === "unlimited" ? "Infinity" : hard, out);
  });

  it("openFileLimit() gives a lowered hard limit", async () => {
    const out = await runScript(
      "ulimit -n 300",
      `import { openFileLimit } from ${JSON.stringify(RUNTIME)}; console.log(openFileLimit());`,
    );
    assert.equal(out.trim(), "300");
    assert.equal(typeof openFileLimit(), "number");
  });

  it("openDescriptorCount() counts a file opened", async () => {
    // Other work of the test process (a descriptor an earlier test's
    // server or child is still closing) can change the count between two
    // reads; a round where nothing else moved shows the file alone.
    let seen = "";
    for (let round = 0; round < 50; round++) {
      const before = openDescriptorCount();
      assert.ok(before !== undefined && before >= 3, String(before));
      const file = await open(fileURLToPath(import.meta.url), "r");
      let during: number | undefined;
      try {
        during = openDescriptorCount();
      } finally {
        await file.close();
      }
      const after = openDescriptorCount();
      if (during === before + 1 && after === before) return;
      seen += ` ${before}/${during}/${after}`;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.fail(`never one more while the file was open (before/during/after):${seen}`);
  });
});
