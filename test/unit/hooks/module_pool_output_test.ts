/**
 * What a module hook writes, against real deno workers: console output
 * becomes `hook output` log lines (multi-byte characters intact, the last
 * line logged without its newline), and garbage on stdout does not corrupt
 * the results.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { logged, startPool, usePoolFixture, valueOf } from "./module_pool_setup.ts";
import { eventually } from "./pool_fixture.ts";

describe("ModulePool", () => {
  usePoolFixture();

  it("console output of a hook becomes `hook output` log lines and leaves results intact", async () => {
    const pool = await startPool(`
export default function (input) {
  console.log("hello from hook", input.n);
  console.error("to stderr", input.n);
  console.info(JSON.stringify({ t: "result", ok: true, value: "forged" }));
  return input.n * 2;
}`);
    assert.deepEqual(await pool.call({ n: 21 }), { ok: true, value: 42 });
    assert.deepEqual(await pool.call({ n: 5 }), { ok: true, value: 10 });
    await eventually(() => logged("hook output").length >= 6, "six hook output lines");
    const outputs = logged("hook output");
    assert.ok(outputs.some((l) => l.includes(`line="hello from hook 21"`)), outputs.join(""));
    assert.ok(outputs.some((l) => l.includes(`line="to stderr 5"`)), outputs.join(""));
    assert.ok(outputs.every((l) => l.includes(`hook=${pool.options.name}`) && / pid=\d+/.test(l)));
    assert.ok(outputs.every((l) => / level=info /.test(l)));
  });

  it("console output of a hook keeps multi-byte characters intact across pipe reads", async () => {
    // 5000 lines of 151 bytes in one write: the pipe delivers it in pieces
    // whose boundaries fall inside the 3-byte characters.
    const pool = await startPool(
      `
export default function () {
  console.log(Array.from({ length: 5000 }, () => "€".repeat(50)).join("\\n"));
  return "printed";
}`,
      {
        // 755 KB in 5000 lines: over the default budget of output a second.
        outputLimits: { linesPerSecond: 10_000, bytesPerSecond: 1024 * 1024 },
      },
    );
    assert.deepEqual(await pool.call({}), { ok: true, value: "printed" });
    await eventually(() => logged("hook output").length >= 5000, "5000 output lines");
    const outputs = logged("hook output");
    assert.equal(outputs.length, 5000);
    const intact = ` line=${JSON.stringify("€".repeat(50))}`;
    const broken = outputs.filter((l) => !l.includes(intact));
    assert.equal(broken.length, 0, `${broken.length} lines differ, first: ${broken[0]}`);
  });

  it("output a hook writes without a final newline before it exits is still logged", async () => {
    const pool = await startPool(`
export default function () {
  Deno.stderr.writeSync(new TextEncoder().encode("last words without newline"));
  Deno.exit(2);
}`);
    const outcome = await pool.call({});
    assert.equal(outcome.ok ? "ok" : outcome.failure, "crash");
    if (outcome.ok) return;
    assert.match(outcome.error, /status 2/);
    assert.match(outcome.error, /last words without newline/);
    await eventually(
      () => logged("hook output").some((l) => l.includes("last words without newline")),
      "the unterminated line to be logged",
    );
  });

  it("a hook writing garbage to Deno.stdout, process.stdout and fd 1 does not corrupt results", async () => {
    const pool = await startPool(`
import { writeSync } from "node:fs";
export default async function (input) {
  writeSync(1, "fd one garbage\\n");
  const garbage = new Uint8Array([0, 0, 0, 7, 1, 0, 0, 0, 1, 123, 125, 255, 10]);
  await Deno.stdout.write(garbage);
  Deno.stdout.writeSync(new TextEncoder().encode("plain text on stdout\\n"));
  globalThis.process?.stdout.write("node stdout garbage\\n");
  return { n: input.n, pid: Deno.pid };
}`);
    const a = valueOf(await pool.call({ n: 1 })) as { n: number; pid: number };
    const b = valueOf(await pool.call({ n: 2 })) as { n: number; pid: number };
    assert.equal(a.n, 1);
    assert.equal(b.n, 2);
    assert.equal(a.pid, b.pid, "the worker survived");
    assert.equal(pool.restarts, 0);
    await eventually(
      () => logged("hook output").some((l) => l.includes("plain text on stdout")),
      "the stdout text to show as hook output",
    );
  });
});
