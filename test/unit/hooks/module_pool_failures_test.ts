/**
 * ModulePool calls that fail, against real deno workers: a hook that
 * throws, cannot be loaded or returns what JSON cannot carry; a worker that
 * dies at start-up (back-off, no respawn storm) or mid-call; a stuck hook
 * (timeout, worker retired, message source closed); and close().
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "./manual_clock.ts";
import { countedChunks, logged, startPool, usePoolFixture, valueOf } from "./module_pool_setup.ts";
import { eventually } from "./pool_fixture.ts";

describe("ModulePool", () => {
  usePoolFixture();

  it("call() resolves with hook_error carrying the message when the hook throws", async () => {
    const pool = await startPool(`
export default async function (input) {
  if (input.sync) throw new Error("sync boom");
  await Promise.resolve();
  throw new TypeError("async boom");
}`);
    const sync = await pool.call({ sync: true });
    assert.equal(sync.ok, false);
    if (sync.ok) return;
    assert.equal(sync.failure, "hook_error");
    assert.match(sync.error, /sync boom/);
    const later = await pool.call({ sync: false });
    assert.equal(later.ok, false);
    if (later.ok) return;
    assert.equal(later.failure, "hook_error");
    assert.match(later.error, /TypeError: async boom/);
    // A thrown error does not end the worker.
    assert.deepEqual(await pool.call({ sync: true }).then((o) => o.ok), false);
    assert.equal(pool.restarts, 0);
  });

  it("call() resolves with load_error for every call when the hook has a syntax error, logging at most once per second", async () => {
    // The test moves the pool's clock: the log's rate limit is checked at
    // its exact edges, however slowly the worker reports its load error.
    const clock = new ManualClock();
    const pool = await startPool(`export default function ( {\n  return 1;\n`, { clock });
    const errors = () => logged("hook cannot be loaded; its calls fail until it is fixed");
    const failure = async () => {
      const outcome = await pool.call({});
      return outcome.ok ? "ok" : outcome.failure;
    };
    const first = await pool.call({});
    assert.equal(first.ok, false);
    if (first.ok) return;
    assert.equal(first.failure, "load_error");
    assert.notEqual(first.error, "");
    assert.equal(errors().length, 1, "the load error is logged when it comes");
    assert.ok(errors()[0]!.includes(`hook=${pool.options.name}`));
    // A burst at the same instant: every call fails, nothing more is logged.
    const burst = await Promise.all(Array.from({ length: 20 }, () => pool.call({})));
    assert.deepEqual(burst.map((o) => (o.ok ? "ok" : o.failure)), Array(20).fill("load_error"));
    assert.equal(errors().length, 1);
    clock.advance(999);
    assert.equal(await failure(), "load_error");
    assert.equal(errors().length, 1, "not again within the second");
    clock.advance(1);
    assert.equal(await failure(), "load_error");
    assert.equal(errors().length, 2, "again once the second is over");
    // The second is counted from the last line logged, not from the first.
    clock.advance(999);
    assert.equal(await failure(), "load_error");
    assert.equal(errors().length, 2);
    clock.advance(1);
    assert.equal(await failure(), "load_error");
    assert.equal(errors().length, 3);
    // A load error lasts until the files change, however long that takes.
    clock.advance(24 * 3600 * 1000);
    assert.notEqual(pool.loadError, undefined);
    assert.equal(await failure(), "load_error");
    assert.equal(errors().length, 4);
    // No respawn storm: the broken hook's worker is not replaced.
    assert.equal(pool.restarts, 0);
    await eventually(() => pool.workerCount === 0, "the broken worker to end");
    assert.equal(pool.restarts, 0);
  });

  it("logs a load error's first line and place, never deno's code frame of the hook's source", async () => {
    // A syntax error: deno quotes the offending line of the hook under its
    // message, and a hook's source can hold a secret (an API key).
    const pool = await startPool(
      `const key = "sk-live-7f3a9c";\nexport default function () { return { a: 1; }; }\n`,
    );
    const outcome = await pool.call({});
    assert.equal(outcome.ok ? "ok" : outcome.failure, "load_error");
    const errors = logged("hook cannot be loaded; its calls fail until it is fixed");
    assert.equal(errors.length, 1);
    assert.doesNotMatch(errors[0]!, /sk-live-7f3a9c|return \{ a: 1/);
    assert.match(errors[0]!, /error="[^"]+ at file:\/\/\S+:2:\d+"/);
  });

  it("call() resolves with load_error when the module has no default export function", async () => {
    const pool = await startPool(`export const notDefault = 1;`);
    const outcome = await pool.call({});
    assert.equal(outcome.ok, false);
    if (outcome.ok) return;
    assert.equal(outcome.failure, "load_error");
    assert.match(outcome.error, /no default export function/);
  });

  it("call() resolves with hook_error when the hook's result cannot be sent as JSON", async () => {
    const pool = await startPool(`
export default function (input) {
  if (input.kind === "bigint") return 1n;
  const cyclic = {};
  cyclic.self = cyclic;
  return cyclic;
}`);
    for (const kind of ["bigint", "cyclic"]) {
      const outcome = await pool.call({ kind });
      assert.equal(outcome.ok, false, kind);
      if (outcome.ok) continue;
      assert.equal(outcome.failure, "hook_error");
      assert.match(outcome.error, /cannot be sent as JSON/);
    }
    assert.equal(pool.restarts, 0);
  });

  it("call() backs off again each time a worker dies during start-up, without a respawn storm", async () => {
    // The pool's clock moves only here: each back-off is checked at its
    // exact end, however long the worker takes to die.
    const clock = new ManualClock();
    const pool = await startPool(`Deno.exit(1);\nexport default () => 1;\n`, { clock });
    const failure = async () => {
      const outcome = await pool.call({});
      return outcome.ok ? "ok" : outcome.failure;
    };
    await eventually(() => pool.loadError !== undefined, "the start-up failure");
    assert.match(pool.loadError!, /worker exited during start-up/);
    assert.equal(await failure(), "load_error");
    clock.advance(1999);
    assert.equal(await failure(), "load_error");
    assert.equal(pool.restarts, 0, "no worker is started during the back-off");
    clock.advance(1);
    // After the back-off, the next call tries a new worker, which dies too.
    assert.equal(pool.loadError, undefined, "the back-off ends after 2 s");
    assert.equal(await failure(), "crash");
    assert.equal(pool.restarts, 1);
    // That second start-up failure starts a new back-off, as long, from then.
    assert.match(pool.loadError ?? "", /worker exited during start-up/);
    clock.advance(1999);
    assert.equal(await failure(), "load_error");
    assert.equal(pool.restarts, 1, "a worker was started for a call during the second back-off");
    clock.advance(1);
    assert.equal(pool.loadError, undefined, "the second back-off ends after 2 s");
  });

  it("call() resolves with crash when the hook exits mid-call, and the next call runs on a fresh worker", async () => {
    const pool = await startPool(`
export default async function (input) {
  if (input.exit) {
    await new Promise((r) => setTimeout(r, 20));
    Deno.exit(3);
  }
  return { pid: Deno.pid };
}`);
    const before = valueOf(await pool.call({})) as { pid: number };
    const crashed = await pool.call({ exit: true });
    assert.equal(crashed.ok, false);
    if (crashed.ok) return;
    assert.equal(crashed.failure, "crash");
    assert.match(crashed.error, /status 3/);
    const after = valueOf(await pool.call({})) as { pid: number };
    assert.notEqual(after.pid, before.pid);
    assert.equal(pool.restarts, 1);
    assert.equal(pool.workerCount, 1);
    assert.equal(logged("hook worker exited").length, 1);
  });

  it("call() resolves with timeout for a stuck hook, retires that worker, and the next call succeeds", async () => {
    // The test moves the clock of the time limits: no call times out but the
    // one it means to, however long the workers take to start.
    const clock = new ManualClock();
    const pool = await startPool(
      `
export default function (input) {
  if (input.spin) {
    Deno.stdout.writeSync(new TextEncoder().encode("spinning for ever\\n"));
    for (;;) {}
  }
  return { pid: Deno.pid };
}`,
      { timeoutMs: 1500, clock },
    );
    const first = valueOf(await pool.call({})) as { pid: number };
    const call = pool.call({ spin: true });
    await eventually(
      () => logged("hook output").some((l) => l.includes(`line="spinning for ever"`)),
      "the hook to be stuck",
    );
    clock.advance(1499);
    assert.equal(logged("hook timed out; its worker is retired").length, 0, "not yet");
    clock.advance(1);
    const stuck = await call;
    assert.deepEqual(stuck, { ok: false, failure: "timeout", error: "no result within 1500 ms" });
    assert.equal(logged("hook timed out; its worker is retired").length, 1);
    const next = valueOf(await pool.call({})) as { pid: number };
    assert.notEqual(next.pid, first.pid, "the stuck worker is not used again");
    assert.equal(pool.restarts, 1);
    // The stuck worker was ended; only the new one is left.
    await eventually(() => pool.workerCount === 1, "the stuck worker to exit");
    assert.equal(logged("hook worker exited").length, 0, "its end was expected");
  });

  it("call() closes the message source of a call that timed out", async () => {
    const clock = new ManualClock();
    const pool = await startPool(
      `
export default async function (input) {
  if (!input.message) return "up";
  const reader = input.message.getReader();
  await reader.read();
  await new Promise(() => {}); // never returns
}`,
      { timeoutMs: 1000, clock },
    );
    assert.deepEqual(await pool.call({}), { ok: true, value: "up" });
    const { iterable, stats } = countedChunks(
      Array.from({ length: 5 }, () => new TextEncoder().encode("chunk\r\n")),
    );
    const call = pool.call({}, iterable);
    await eventually(() => stats.pulls >= 1, "the hook to read a chunk");
    assert.equal(stats.returned, false, "the source is open while the call runs");
    clock.advance(1000);
    const outcome = await call;
    assert.equal(outcome.ok ? "ok" : outcome.failure, "timeout");
    assert.ok(stats.pulls >= 1 && stats.pulls < 5, `pulls ${stats.pulls}`);
    await eventually(() => stats.returned, "the message source to be closed");
  });

  it("close() lets a call in flight finish, then refuses new calls and ends the workers", async () => {
    const pool = await startPool(`
export default async function (input) {
  await new Promise((r) => setTimeout(r, 300));
  return "done " + input.n;
}`);
    valueOf(await pool.call({ n: 0 }));
    const inFlight = pool.call({ n: 1 });
    await new Promise((r) => setTimeout(r, 50));
    pool.close();
    assert.deepEqual(await pool.call({ n: 2 }), {
      ok: false,
      failure: "crash",
      error: "the hook was unloaded",
    });
    assert.deepEqual(await inFlight, { ok: true, value: "done 1" });
    await eventually(() => pool.workerCount === 0, "the worker to end after close()");
    assert.equal(logged("hook worker exited").length, 0);
  });
});
