import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import { spawnProcess } from "../../../src/runtime/mod.ts";
import { chunksOf } from "../helpers.ts";

const ENV = { PATH: "/usr/bin:/bin" };

describe("spawnProcess", () => {
  it("spawnProcess() returns the exit code, stdout and stderr of the command", async () => {
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"],
      env: ENV,
      stdin: chunksOf("hello ", "world\n"),
      timeoutMs: 10_000,
    });
    assert.deepEqual(result, {
      exitCode: 3,
      timedOut: false,
      stdout: "HELLO WORLD\n",
      stderr: "oops\n",
    });
  });

  it("spawnProcess() resolves with 127 when argv is empty", async () => {
    const result = await spawnProcess({ argv: [], env: ENV, stdin: chunksOf(), timeoutMs: 1000 });
    assert.deepEqual(result, {
      exitCode: 127,
      timedOut: false,
      stdout: "",
      stderr: "empty command",
    });
  });

  it("spawnProcess() resolves with 127 when the program does not exist", async () => {
    const result = await spawnProcess({
      argv: ["/nonexistent/postern-test-program"],
      env: ENV,
      stdin: chunksOf("x"),
      timeoutMs: 10_000,
    });
    assert.equal(result.exitCode, 127);
    assert.equal(result.timedOut, false);
  });

  it("spawnProcess() cuts stdout and stderr at maxOutputBytes", async () => {
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "printf '0123456789'; printf 'abcdefghij' >&2"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 10_000,
      maxOutputBytes: 4,
    });
    assert.equal(result.stdout, "0123");
    assert.equal(result.stderr, "abcd");
  });

  it("spawnProcess() decodes a UTF-8 character split across two reads as one character", async () => {
    // 300,000 bytes of a 3-byte character, written 8 KiB at a time: reads
    // (at most 64 KiB, a pipe's capacity) cannot all end on a character
    // boundary, so some character arrives in two chunks.
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "yes € | tr -d '\\n' | head -c 300000"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 30_000,
      maxOutputBytes: 1024 * 1024,
    });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout.length, 100_000);
    assert.equal(result.stdout, "€".repeat(100_000));
  });

  it("spawnProcess() leaves out a character that maxOutputBytes cuts in two", async () => {
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "printf 'caf\\303\\251'"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 10_000,
      maxOutputBytes: 4,
    });
    assert.equal(result.stdout, "caf");
  });

  it("spawnProcess() reads on past maxOutputBytes by default and says how much there was", async () => {
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "head -c 100000 /dev/zero; head -c 70000 /dev/zero >&2"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 10_000,
      maxOutputBytes: 65_536,
    });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout.length, 65_536);
    assert.equal(result.stdoutOverflow, 100_000);
    assert.equal(result.stderr.length, 65_536);
    assert.equal(result.stderrOverflow, 70_000);
  });

  it("spawnProcess() sets no overflow for output of exactly maxOutputBytes", async () => {
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "head -c 1000 /dev/zero; head -c 1000 /dev/zero >&2"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 10_000,
      maxOutputBytes: 1000,
    });
    assert.equal(result.stdout.length, 1000);
    assert.equal(result.stderr.length, 1000);
    assert.equal("stdoutOverflow" in result, false);
    assert.equal("stderrOverflow" in result, false);
  });

  it("spawnProcess() with onStdoutExcess kill ends the child and its group as stdout passes the limit", async () => {
    // Without the kill this would run until the timeout (timedOut: true);
    // the background sleep shows the whole process group goes.
    const result = await spawnProcess({
      argv: ["/bin/sh", "-c", "sleep 60 & head -c 100000 /dev/zero; exec sleep 60"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 20_000,
      maxOutputBytes: 65_536,
      onStdoutExcess: "kill",
    });
    assert.equal(result.timedOut, false);
    assert.equal(result.exitCode, null);
    assert.equal(result.stdout.length, 65_536);
    assert.ok((result.stdoutOverflow ?? 0) > 65_536, String(result.stdoutOverflow));
  });

  it("spawnProcess() kills the command and sets timedOut when it runs too long", async () => {
    const result = await spawnProcess({
      argv: ["/bin/sleep", "30"],
      env: ENV,
      stdin: chunksOf(),
      timeoutMs: 100,
    });
    assert.equal(result.timedOut, true);
    assert.equal(result.exitCode, null);
  });

  it("spawnProcess() does not pile up listeners when a large input meets backpressure", async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on("warning", onWarning);
    try {
      // The child reads 64 KiB at a time, slowly, so every 256 KiB write
      // meets a full pipe and the writer waits for drain each time.
      const reader =
        'while n=$(dd bs=65536 count=1 2>/dev/null | wc -c) && [ "$n" -gt 0 ]; do :; done';
      const chunk = new Uint8Array(256 * 1024);
      const result = await spawnProcess({
        argv: ["/bin/sh", "-c", reader],
        env: ENV,
        stdin: chunksOf(...Array.from({ length: 20 }, () => chunk)),
        timeoutMs: 30_000,
      });
      assert.equal(result.exitCode, 0);
      await new Promise((r) => setTimeout(r, 1));
    } finally {
      process.off("warning", onWarning);
    }
    assert.deepEqual(warnings.filter((w) => w.startsWith("MaxListenersExceededWarning")), []);
  });
});
