/**
 * Round-trip latency of a trivial module hook: Postern's side of the
 * framed channel to a sandboxed deno worker and back, as the hook runner
 * makes every call. Prints the median and p99 of sequential calls, and the
 * calls per second one worker serves with calls in flight at once.
 *
 * The pre-delivery-attempt point measures what the delivery queue sees: a
 * call with GreenArrow's input keys and the state argument, its result read
 * as the queue reads it (goal: 20,000 calls/s, p99 <= 1 ms).
 *
 * The sequential calls are timed in rounds that alternate with a bare
 * echo over the same kind of pipes (the floor), so that the machine's own
 * noise shows beside the figure it affects.
 *
 * Usage: deno run -A scripts/bench/hook_latency.ts [label] [post-data|pre-delivery-attempt]
 *        bun run scripts/bench/hook_latency.ts [label] [point]
 *
 * @module
 */

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type CallOutcome, ModulePool, NO_GRANTS, WORKER_SOURCE } from "../../src/hooks/mod.ts";
import { encodeJsonFrame } from "../../src/hooks/frames.ts";
import { startChild } from "../../src/runtime/mod.ts";
import { preDeliveryDecision } from "../../src/outbound/mod.ts";
import { findDeno } from "../../src/hooks/find_deno.ts";
import { Logger } from "../../src/log/mod.ts";

/** Sequential calls in all, in rounds that alternate with the floor's. */
const SEQUENTIAL = 20_000;
const ROUNDS = 10;
const CONCURRENT = 20_000;
const CONCURRENT_ROUNDS = 3;
const IN_FLIGHT = 32;
const WARM_UP_MS = 1500;

/**
 * The floor: a child that echoes each request back over the same pipes
 * (standard input in, descriptor 3 out, read with a `node:net` socket as
 * the worker does), timed the same way. It is what this machine charges
 * for two processes to hand a message there and back; on a 2-CPU VM its
 * p99 moves with the hypervisor's steal time, so it is measured in the
 * same run, in rounds alternating with the hook's.
 */
const ECHO_SOURCE = `import { Socket } from "node:net";
const out = new Socket({ fd: 3, readable: false, writable: true });
new Socket({ fd: 0, readable: true, writable: false }).on("data", (b) => out.write(b));
`;

const label = process.argv[2] ?? "";
const point = process.argv[3] === "pre-delivery-attempt" ? "pre-delivery-attempt" : "post-data";
const dir = await mkdtemp(join(tmpdir(), "postern-hook-bench-"));
const hooks = join(dir, "hooks");
await writeFile(join(dir, "worker.js"), WORKER_SOURCE);
await mkdir(hooks);
await writeFile(
  join(hooks, `${point}.ts`),
  point === "post-data"
    ? 'export default () => ({ action: "accept", headers: ["X-Hook: ok"] });\n'
    : 'export default () => ({ action: "normal" });\n',
);
const deno = findDeno({ env: (n) => process.env[n], execPath: process.execPath });
if (!deno) throw new Error("deno not found");
const pool = new ModulePool({
  name: point,
  hooksDir: hooks,
  entry: join(hooks, `${point}.ts`),
  deno: deno.path,
  bootstrap: join(dir, "worker.js"),
  grants: NO_GRANTS,
  maxMemoryBytes: 256 * 1024 * 1024,
  outputLimits: { linesPerSecond: 200, bytesPerSecond: 64 * 1024 },
  workers: 1,
  timeoutMs: 10_000,
  cwd: dir,
  env: (n) => process.env[n],
  logger: new Logger("warn", (line) => process.stderr.write(line)),
});
const input = point === "post-data"
  ? { queueId: "0", remoteAddr: "127.0.0.1", mailFrom: "a@b", rcptTo: ["c@d"] }
  : {
    mtaid: "default",
    sendid: "s1",
    listid: "l1",
    msguid: "01m8ebgzcd329rxf",
    injtime: 1795778182,
    sender: "a@example.test",
    recipient: "c@remote.test",
    is_first_attempt: 1,
    mtaid_exists: 1,
  };
/** A call as its caller reads it: a pre-delivery result is also interpreted. */
const check = (outcome: CallOutcome) => {
  if (!outcome.ok) throw new Error(`call failed: ${outcome.error}`);
  if (point === "pre-delivery-attempt" && preDeliveryDecision(outcome).kind !== "deliver") {
    throw new Error("unexpected pre-delivery decision");
  }
};
await writeFile(join(dir, "echo.js"), ECHO_SOURCE);
const echo = startChild({
  argv: [deno.path, "run", "--quiet", "--no-config", join(dir, "echo.js")],
  env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", HOME: process.env.HOME ?? "/" },
});
let echoed: () => void = () => {};
echo.onChannel(() => echoed());
const request = encodeJsonFrame(1, { t: "call", input, message: false });
/** One round trip through the echo child. */
const echoOnce = () =>
  new Promise<void>((resolve) => {
    echoed = resolve;
    echo.write(request);
  });

/** Milliseconds of each of `count` sequential calls of `once`. */
async function timeEach(once: () => Promise<void>, count: number, into: number[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await once();
    into.push(performance.now() - start);
  }
}
const hookOnce = async () => check(await pool.call(input));
const summary = (times: number[]) => {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `median ${at(0.5).toFixed(3)} ms, p99 ${at(0.99).toFixed(3)} ms`;
};

try {
  // Warm up by time, not count: the first calls after a short warm-up were
  // still slow while the JIT tiered up, and filled the p99.
  for (const once of [hookOnce, echoOnce]) {
    const started = performance.now();
    while (performance.now() - started < WARM_UP_MS) await once();
  }
  const hookTimes: number[] = [];
  const floorTimes: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await timeEach(hookOnce, SEQUENTIAL / ROUNDS, hookTimes);
    await timeEach(echoOnce, SEQUENTIAL / ROUNDS, floorTimes);
  }

  const rates: number[] = [];
  for (let round = 0; round < CONCURRENT_ROUNDS; round++) {
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next++ < CONCURRENT) await hookOnce();
    }));
    rates.push(CONCURRENT / ((performance.now() - started) / 1000));
  }
  rates.sort((a, b) => a - b);
  const prefix = label ? `${label}: ` : "";
  console.log(
    `${prefix}sequential ${SEQUENTIAL} calls: ${summary(hookTimes)} ` +
      (point === "post-data" ? "(goal: median <= 0.2 ms, p99 <= 2 ms)" : "(goal: p99 <= 1 ms)"),
  );
  console.log(
    `${prefix}floor, a bare echo over the same pipes, same rounds: ${summary(floorTimes)}`,
  );
  console.log(
    `${prefix}${IN_FLIGHT} in flight: ${rates[1]!.toFixed(0)} calls/s on one worker ` +
      `(median of ${CONCURRENT_ROUNDS} rounds of ${CONCURRENT}; ` +
      `${rates[0]!.toFixed(0)}-${rates[2]!.toFixed(0)})` +
      (point === "post-data" ? "" : " (goal: >= 20,000 calls/s)"),
  );
} finally {
  pool.kill();
  echo.kill();
  await rm(dir, { recursive: true, force: true });
}
