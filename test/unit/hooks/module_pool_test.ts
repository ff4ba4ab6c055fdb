/**
 * ModulePool against real deno workers: the bootstrap from worker_source.ts
 * written to a temporary file, hook modules in a temporary hooks folder.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { ModulePool, type ModulePoolOptions } from "../../../src/hooks/module_pool.ts";
import type { CallOutcome } from "../../../src/hooks/worker.ts";
import { Logger } from "../../../src/log/mod.ts";
import { ManualClock } from "./manual_clock.ts";
import { eventually, PoolFixture } from "./pool_fixture.ts";

/** The value of a successful outcome; fails the test otherwise. */
function valueOf(outcome: CallOutcome): unknown {
  if (!outcome.ok) assert.fail(`expected a value, got ${outcome.failure}: ${outcome.error}`);
  return outcome.value;
}

/** An iterable over `chunks` that counts how often the consumer pulls from it. */
function countedChunks(chunks: Uint8Array[]) {
  const stats = { pulls: 0, returned: false };
  const iterable: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next() {
          stats.pulls++;
          const value = chunks[i++];
          return Promise.resolve(
            value === undefined ? { done: true, value: undefined } : { done: false, value },
          );
        },
        return() {
          stats.returned = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
  return { iterable, stats };
}

function sha256(chunks: Uint8Array[]): string {
  const hash = createHash("sha256");
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest("hex");
}

describe("ModulePool", () => {
  let fixture: PoolFixture;
  let lines: string[];

  before(async () => {
    fixture = await PoolFixture.create("postern-pool-");
  });
  afterEach(() => fixture.killAll());
  after(() => fixture.remove());

  /** Writes `source` as a fresh hook module and starts a pool for it, logging into `lines`. */
  function startPool(
    source: string,
    overrides: Partial<ModulePoolOptions> = {},
  ): Promise<ModulePool> {
    lines = [];
    return fixture.start(source, {
      logger: new Logger("debug", (line) => lines.push(line)),
      ...overrides,
    });
  }

  const logged = (msg: string) => lines.filter((l) => l.includes(` msg=${JSON.stringify(msg)}`));

  it("call() resolves with the value the hook returns", async () => {
    const pool = await startPool(
      `export default async function (input) { return { got: input, sum: input.a + input.b }; }`,
    );
    assert.deepEqual(await pool.call({ a: 2, b: 3 }), {
      ok: true,
      value: { got: { a: 2, b: 3 }, sum: 5 },
    });
    assert.equal(pool.workerCount, 1);
    assert.equal(pool.restarts, 0);
    assert.equal(pool.loadError, undefined);
  });

  it("call() keeps module state across calls on the same worker", async () => {
    const pool = await startPool(
      `let calls = 0;\nexport default () => ({ calls: ++calls, pid: Deno.pid });`,
    );
    const results = [];
    for (let i = 0; i < 3; i++) results.push(valueOf(await pool.call({})) as { calls: number });
    assert.deepEqual(results.map((r) => r.calls), [1, 2, 3]);
    assert.equal(new Set(results.map((r) => (r as unknown as { pid: number }).pid)).size, 1);
  });

  it("call() runs calls concurrently on one worker when the hook awaits", async () => {
    const pool = await startPool(`
export default async function (input) {
  const start = Date.now();
  await new Promise((r) => setTimeout(r, 200));
  return { n: input.n, start, end: Date.now(), pid: Deno.pid };
}`);
    valueOf(await pool.call({ n: 0 })); // the worker is up
    const [a, b] = (await Promise.all([pool.call({ n: 1 }), pool.call({ n: 2 })])).map(
      (o) => valueOf(o) as { n: number; start: number; end: number; pid: number },
    );
    assert.equal(a!.n, 1);
    assert.equal(b!.n, 2);
    assert.equal(a!.pid, b!.pid, "both calls ran on the one worker");
    // Each call started before the other ended: they overlapped.
    assert.ok(a!.start < b!.end && b!.start < a!.end, JSON.stringify({ a, b }));
  });

  it("call() streams the message to a hook that reads it, byte for byte", async () => {
    const pool = await startPool(`
export default async function (input) {
  const bytes = new Uint8Array(await new Response(input.message).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return {
    length: bytes.byteLength,
    sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    id: input.id,
  };
}`);
    const chunks: Uint8Array[] = [];
    for (let c = 0; c < 20; c++) {
      const chunk = new Uint8Array(64 * 1024 + c);
      for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31 + c * 7) & 0xff;
      chunks.push(chunk);
    }
    chunks.push(new TextEncoder().encode("\r\n.\r\nlast line ünï\r\n"));
    const { iterable, stats } = countedChunks(chunks);
    const value = valueOf(await pool.call({ id: "m1" }, iterable));
    assert.deepEqual(value, {
      length: chunks.reduce((n, c) => n + c.byteLength, 0),
      sha256: sha256(chunks),
      id: "m1",
    });
    // One pull per chunk, and one that found the end.
    assert.equal(stats.pulls, chunks.length + 1);
  });

  it("call() keeps the messages of concurrent calls apart", async () => {
    const pool = await startPool(`
export default async function (input) {
  const reader = input.message.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    await new Promise((r) => setTimeout(r, 5));
  }
  return { tag: input.tag, text };
}`);
    const make = (tag: string) =>
      countedChunks(Array.from({ length: 10 }, (_, i) => new TextEncoder().encode(`${tag}${i};`)));
    const a = make("a");
    const b = make("b");
    const [ra, rb] = await Promise.all([
      pool.call({ tag: "A" }, a.iterable),
      pool.call({ tag: "B" }, b.iterable),
    ]);
    const expected = (tag: string) => Array.from({ length: 10 }, (_, i) => `${tag}${i};`).join("");
    assert.deepEqual(valueOf(ra), { tag: "A", text: expected("a") });
    assert.deepEqual(valueOf(rb), { tag: "B", text: expected("b") });
  });

  it("call() pulls no chunk of the message when the hook does not read it, and closes the source", async () => {
    const pool = await startPool(`export default (input) => ({ hasMessage: !!input.message });`);
    const { iterable, stats } = countedChunks([new TextEncoder().encode("never read")]);
    assert.deepEqual(await pool.call({}, iterable), { ok: true, value: { hasMessage: true } });
    assert.equal(stats.pulls, 0);
    await eventually(() => stats.returned, "the message source to be closed");
  });

  it("call() survives a hook that cancels the message while a chunk is on its way, and runs each call once", async () => {
    const pool = await startPool(`
      let calls = 0;
      export default async (input) => {
        calls++;
        const reader = input.message.getReader();
        const pending = reader.read();
        // Let the read reach Postern (a pull), then cancel before its answer.
        await new Promise((r) => setTimeout(r, 20));
        await reader.cancel();
        await pending.catch(() => {});
        // Still running when the chunk arrives.
        await new Promise((r) => setTimeout(r, 300));
        return calls;
      };`);
    // The chunk comes after the hook has cancelled its stream.
    const late: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        await new Promise((r) => setTimeout(r, 100));
        yield new TextEncoder().encode("too late");
      },
    };
    assert.deepEqual(await pool.call({}, late), { ok: true, value: 1 });
    await new Promise((r) => setTimeout(r, 200));
    // The same worker, and the first call was not run again.
    assert.deepEqual(await pool.call({}, late), { ok: true, value: 2 });
    assert.equal(pool.restarts, 0);
    assert.deepEqual(logged("hook output"), []);
  });

  it("call() gives the hook no message stream when no message is passed", async () => {
    const pool = await startPool(`export default (input) => ({ keys: Object.keys(input) });`);
    assert.deepEqual(await pool.call({ address: "a@b" }), {
      ok: true,
      value: { keys: ["address"] },
    });
  });

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

  it("call() runs the hook with reads limited to its own files and no env, write or net", async () => {
    const secret = join(fixture.root, "secret.txt");
    await writeFile(secret, "top secret");
    const pool = await startPool(`
export default async function (input) {
  const attempts = {
    own: () => Deno.readTextFile(input.own),
    secret: () => Deno.readTextFile(input.secret),
    env: async () => Deno.env.get("HOME"),
    write: () => Deno.writeTextFile(input.write, "x"),
    net: async () => (await Deno.connect({ hostname: "127.0.0.1", port: 9 })).close(),
  };
  const results = {};
  for (const [key, attempt] of Object.entries(attempts)) {
    try {
      results[key] = ["allowed", await attempt()];
    } catch (err) {
      results[key] = [err.name];
    }
  }
  return results;
}`);
    const ownDir = join(fixture.hooksDir, pool.options.name);
    await mkdir(ownDir);
    await writeFile(join(ownDir, "list.txt"), "own data");
    const value = valueOf(
      await pool.call({
        own: join(ownDir, "list.txt"),
        secret,
        write: join(ownDir, "written.txt"),
      }),
    ) as Record<string, string[]>;
    assert.deepEqual(value.own, ["allowed", "own data"]);
    for (const key of ["secret", "env", "write", "net"]) {
      assert.match(value[key]![0]!, /^(NotCapable|PermissionDenied)$/, `${key}: ${value[key]}`);
    }
  });

  it("call() spreads concurrent calls over the workers, least busy first", async () => {
    const pool = await startPool(
      `
export default async function () {
  await new Promise((r) => setTimeout(r, 100));
  return Deno.pid;
}`,
      { workers: 2 },
    );
    assert.equal(pool.workerCount, 2);
    const pids = (await Promise.all([pool.call({}), pool.call({})])).map(valueOf);
    assert.notEqual(pids[0], pids[1]);
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
