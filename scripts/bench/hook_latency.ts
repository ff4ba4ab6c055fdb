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
import { preDeliveryDecision } from "../../src/outbound/mod.ts";
import { findDeno } from "../../src/hooks/find_deno.ts";
import { Logger } from "../../src/log/mod.ts";

const SEQUENTIAL = 5_000;
const CONCURRENT = 20_000;
const IN_FLIGHT = 32;

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
try {
  for (let i = 0; i < 500; i++) await pool.call(input); // warm up (load, JIT)
  const times: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const start = performance.now();
    check(await pool.call(input));
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;

  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next++ < CONCURRENT) {
      check(await pool.call(input));
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const prefix = label ? `${label}: ` : "";
  console.log(
    `${prefix}sequential ${SEQUENTIAL} calls: median ${at(0.5).toFixed(3)} ms, ` +
      `p99 ${at(0.99).toFixed(3)} ms ` +
      (point === "post-data" ? "(goal: median <= 0.2 ms, p99 <= 2 ms)" : "(goal: p99 <= 1 ms)"),
  );
  console.log(
    `${prefix}${IN_FLIGHT} in flight: ${(CONCURRENT / seconds).toFixed(0)} calls/s on one worker` +
      (point === "post-data" ? "" : " (goal: >= 20,000 calls/s)"),
  );
} finally {
  pool.kill();
  await rm(dir, { recursive: true, force: true });
}
