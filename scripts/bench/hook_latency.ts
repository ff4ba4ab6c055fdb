/**
 * Round-trip latency of a trivial module hook: Postern's side of the
 * framed channel to a sandboxed deno worker and back, as the hook runner
 * makes every call. Prints the median and p99 of sequential calls, and the
 * calls per second one worker serves with calls in flight at once.
 *
 * Usage: deno run -A scripts/bench/hook_latency.ts [label]
 *        bun run scripts/bench/hook_latency.ts [label]
 *
 * @module
 */

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { ModulePool, NO_GRANTS, WORKER_SOURCE } from "../../src/hooks/mod.ts";
import { findDeno } from "../../src/hooks/find_deno.ts";
import { Logger } from "../../src/log/mod.ts";

const SEQUENTIAL = 5_000;
const CONCURRENT = 20_000;
const IN_FLIGHT = 32;

const label = process.argv[2] ?? "";
const dir = await mkdtemp(join(tmpdir(), "postern-hook-bench-"));
const hooks = join(dir, "hooks");
await writeFile(join(dir, "worker.js"), WORKER_SOURCE);
await mkdir(hooks);
await writeFile(
  join(hooks, "post-data.ts"),
  'export default () => ({ action: "accept", headers: ["X-Hook: ok"] });\n',
);
const deno = findDeno({ env: (n) => process.env[n], execPath: process.execPath });
if (!deno) throw new Error("deno not found");
const pool = new ModulePool({
  name: "post-data",
  hooksDir: hooks,
  entry: join(hooks, "post-data.ts"),
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
const input = { queueId: "0", remoteAddr: "127.0.0.1", mailFrom: "a@b", rcptTo: ["c@d"] };
try {
  for (let i = 0; i < 500; i++) await pool.call(input); // warm up (load, JIT)
  const times: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const start = performance.now();
    const outcome = await pool.call(input);
    times.push(performance.now() - start);
    if (!outcome.ok) throw new Error(`call failed: ${outcome.error}`);
  }
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;

  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next++ < CONCURRENT) {
      const outcome = await pool.call(input);
      if (!outcome.ok) throw new Error(`call failed: ${outcome.error}`);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const prefix = label ? `${label}: ` : "";
  console.log(
    `${prefix}sequential ${SEQUENTIAL} calls: median ${at(0.5).toFixed(3)} ms, ` +
      `p99 ${at(0.99).toFixed(3)} ms (goal: median <= 0.2 ms, p99 <= 2 ms)`,
  );
  console.log(
    `${prefix}${IN_FLIGHT} in flight: ${(CONCURRENT / seconds).toFixed(0)} calls/s on one worker`,
  );
} finally {
  pool.kill();
  await rm(dir, { recursive: true, force: true });
}
