/**
 * OutputCeiling on a clock the test moves, and WorkerOutput's use of it:
 * output between calls past the log budget, and output at any time past
 * the ceiling of reads or bytes a second, end the worker, said once.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BETWEEN_CALLS_GRACE_MS,
  MIN_BYTES_PER_SECOND,
  MIN_READS_PER_SECOND,
  OutputCeiling,
} from "../../../src/hooks/output_ceiling.ts";
import { WorkerOutput } from "../../../src/hooks/worker_output.ts";

const LIMITS = { linesPerSecond: 3, bytesPerSecond: 100 };

function ceiling() {
  const clock = { now: 0 };
  return { clock, ceiling: new OutputCeiling(LIMITS, () => clock.now) };
}

/** A WorkerOutput on a moved clock that records what it tells its sink. */
function output(limits = LIMITS) {
  const clock = { now: 0 };
  const said: string[] = [];
  const out = new WorkerOutput(limits, {
    line: (line) => said.push(`line ${line}`),
    over: () => said.push("over"),
    dropped: (dropped) => said.push(`dropped ${dropped.lines} ${dropped.bytes}`),
    excess: (cause) => said.push(`excess ${cause}`),
  }, () => clock.now);
  return { clock, said, out, excess: () => said.filter((s) => s.startsWith("excess ")) };
}

const text = (s: string) => new TextEncoder().encode(s);

describe("OutputCeiling", () => {
  it("read() allows 1000 reads in a second and ends the worker on the next", () => {
    const { clock, ceiling: c } = ceiling();
    for (let i = 0; i < MIN_READS_PER_SECOND; i++) {
      clock.now = i * (999 / MIN_READS_PER_SECOND);
      assert.equal(c.read(1), undefined, `read ${i + 1}`);
    }
    assert.match(c.read(1) ?? "", /more than 1000 writes in one second/);
  });

  it("read() allows 5 times the log's lines a second in reads, when that is more than 1000", () => {
    const c = new OutputCeiling({ linesPerSecond: 100_000, bytesPerSecond: 64 << 20 }, () => 0);
    assert.equal(c.maxReadsPerSecond, 500_000);
    for (let i = 0; i < 2000; i++) assert.equal(c.read(16), undefined);
  });

  it("read() counts each second afresh", () => {
    const { clock, ceiling: c } = ceiling();
    for (let second = 0; second < 5; second++) {
      clock.now = second * 1000;
      for (let i = 0; i < MIN_READS_PER_SECOND; i++) assert.equal(c.read(1), undefined);
    }
  });

  it("read() ends the worker past 16 times its byte budget a second, and at least 1 MiB", () => {
    const { ceiling: small } = ceiling();
    assert.equal(small.maxBytesPerSecond, MIN_BYTES_PER_SECOND);
    assert.equal(small.read(MIN_BYTES_PER_SECOND), undefined);
    assert.match(small.read(1) ?? "", /more than 1048576 bytes of output in one second/);
    const large = new OutputCeiling({ linesPerSecond: 3, bytesPerSecond: 1024 * 1024 }, () => 0);
    assert.equal(large.maxBytesPerSecond, 16 * 1024 * 1024);
  });

  it("stray is false while loading and while a call is in flight, true a grace period after the last", () => {
    const { clock, ceiling: c } = ceiling();
    assert.equal(c.stray, false, "loading");
    c.busy(false);
    assert.equal(c.stray, false, "just idle");
    clock.now = BETWEEN_CALLS_GRACE_MS - 1;
    assert.equal(c.stray, false);
    clock.now = BETWEEN_CALLS_GRACE_MS;
    assert.equal(c.stray, true);
    c.busy(false);
    assert.equal(c.stray, true, "still idle since then");
    c.busy(true);
    clock.now = 10_000;
    assert.equal(c.stray, false, "a call in flight");
  });
});

describe("WorkerOutput past its ceiling", () => {
  it("ends a worker whose output goes over its budget between calls, and says so once", () => {
    const { clock, said, out, excess } = output();
    out.busy(false);
    clock.now = BETWEEN_CALLS_GRACE_MS;
    out.push(text("a\nb\n"), "stdout");
    assert.deepEqual(excess(), [], "within the budget");
    out.push(text("c\nd\ne\n"), "stdout");
    assert.deepEqual(excess(), [
      "excess its output went over its budget (3 lines, 100 bytes a second) while no call " +
      "was in flight",
    ]);
    assert.ok(!said.includes("over"), "no over-budget line for a worker that is ended");
    out.push(text("f\n"), "stdout");
    assert.equal(excess().length, 1, "said once");
    assert.deepEqual(said.filter((s) => s.startsWith("line ")), ["line a", "line b", "line c"]);
  });

  it("ends a worker that keeps flooding after its call ended, once the grace is over", () => {
    const { clock, out, excess } = output();
    out.busy(true);
    out.push(text("1\n2\n3\n4\n5\n"), "stdout");
    assert.deepEqual(excess(), [], "a call's own flood is dropped, not ended");
    out.busy(false);
    clock.now = 10;
    out.push(text("6\n"), "stdout");
    assert.deepEqual(excess(), [], "within the grace, it may be the call's");
    clock.now = 10 + BETWEEN_CALLS_GRACE_MS;
    out.push(text("7\n"), "stdout");
    assert.equal(excess().length, 1);
  });

  it("lets a calm worker log between calls", () => {
    const { clock, out, excess, said } = output();
    out.busy(false);
    for (let second = 1; second <= 5; second++) {
      clock.now = second * 1000;
      out.push(text(`tick ${second}\n`), "stderr");
    }
    assert.deepEqual(excess(), []);
    assert.equal(said.filter((s) => s.startsWith("line tick")).length, 5);
  });

  it("ends a worker whose output during a call comes in too many writes", () => {
    const { out, excess } = output({ linesPerSecond: 200, bytesPerSecond: 64 * 1024 });
    out.busy(true);
    for (let i = 0; i <= MIN_READS_PER_SECOND; i++) out.push(text("x"), "stdout");
    assert.deepEqual(excess(), ["excess its output came in more than 1000 writes in one second"]);
  });
});
