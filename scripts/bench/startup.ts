/**
 * Time from start to listening: starts a Postern executable N times (each
 * with a fresh data folder) and reports how long each took until its mail
 * log said `event=listening`, and how long a TypeScript hook's first start
 * took (extraction of an embedded deno included). On Linux it also reports
 * the CPU time each server had used by then, which a busy machine disturbs
 * less than the wall-clock time.
 *
 *   deno run -A scripts/bench/startup.ts [--runs 10] [--ts-hook] [--keep-data] BINARY...
 *
 * `--ts-hook` adds a post-data hook in TypeScript; `--keep-data` reuses one
 * data folder for every run of a binary (the embedded deno is then
 * extracted on the first run only).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    runs: { type: "string", default: "10" },
    "ts-hook": { type: "boolean", default: false },
    "keep-data": { type: "boolean", default: false },
  },
  allowPositionals: true,
});
const runs = Math.min(Math.max(Number(values.runs), 1), 100);

async function configDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "postern-startup-config-"));
  await mkdir(join(dir, "domains", "example.test"), { recursive: true });
  await writeFile(join(dir, "domains", "example.test", "users"), "alice\n");
  if (values["ts-hook"]) {
    await mkdir(join(dir, "hooks"));
    await writeFile(
      join(dir, "hooks", "post-data.ts"),
      "export default (): { action: 'accept' } => ({ action: 'accept' });\n",
    );
  }
  return dir;
}

/** Extraction times that the servers logged (`hook runtime extracted … ms=N`). */
const extractions = new Map<string, number[]>();
/** CPU time (user + system, all threads) each server had used when it listened. */
const cpu = new Map<string, number[]>();

/** CPU milliseconds used so far by process `pid` (Linux), or undefined. */
function cpuMs(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, fields 14 and 15 of proc(5), in ticks of 1/100 s.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Milliseconds from spawn to the listening line; the server is then stopped. */
function once(binary: string, config: string, data: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(binary, [
      "serve",
      "--config",
      config,
      "--data",
      data,
      "--listen",
      "127.0.0.1:0",
      "--admin-listen",
      "127.0.0.1:0",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stderr.on("data", (chunk) => err += chunk);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("event=listening")) {
        const ms = performance.now() - started;
        const used = cpuMs(child.pid);
        if (used !== undefined) cpu.set(binary, [...cpu.get(binary) ?? [], used]);
        const extracted = /msg="hook runtime extracted" .*ms=(\d+)/.exec(err);
        if (extracted) extractions.set(binary, [...extractions.get(binary) ?? [], +extracted[1]!]);
        child.kill("SIGTERM");
        child.once("exit", () => {
          clearTimeout(timer);
          resolve(ms);
        });
      }
    });
    child.once("exit", (code) => {
      if (!out.includes("event=listening")) {
        clearTimeout(timer);
        reject(new Error(`${binary} exited (${code}) before listening:\n${err}`));
      }
    });
  });
}

const config = await configDir();
// Runs alternate between the binaries, so that a busy moment of the
// machine falls on each of them alike.
const times = new Map<string, number[]>(positionals.map((b) => [b, []]));
const shared = new Map<string, string>();
for (const binary of positionals) {
  shared.set(binary, await mkdtemp(join(tmpdir(), "postern-startup-data-")));
}
for (let i = 0; i < runs; i++) {
  for (const binary of positionals) {
    const data = values["keep-data"]
      ? shared.get(binary)!
      : await mkdtemp(join(tmpdir(), "postern-startup-"));
    times.get(binary)!.push(await once(binary, config, data));
    if (!values["keep-data"]) await rm(data, { recursive: true, force: true });
  }
}
for (const [binary, list] of times) {
  await rm(shared.get(binary)!, { recursive: true, force: true });
  const sorted = [...list].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(
    `${binary}: ${runs} runs, to listening: median ${median.toFixed(0)} ms, min ${
      sorted[0]!.toFixed(0)
    }, max ${sorted.at(-1)!.toFixed(0)} (first ${list[0]!.toFixed(0)})`,
  );
  const used = [...cpu.get(binary) ?? []].sort((a, b) => a - b);
  if (used.length > 0) {
    console.log(`  CPU time to listening: median ${used[Math.floor(used.length / 2)]} ms`);
  }
  const extracted = extractions.get(binary);
  if (extracted) console.log(`  embedded deno extracted, ms: ${extracted.join(", ")}`);
}
await rm(config, { recursive: true, force: true });
