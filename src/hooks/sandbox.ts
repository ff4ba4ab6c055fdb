/**
 * The sandbox of a module hook: the `deno run` permission flags. By default
 * a hook may read its own files (`hooks/<name>.ts` and the folder
 * `hooks/<name>/`) and nothing else: no network, no writes, no environment,
 * no subprocesses, no FFI, no system information. The configuration grants
 * more, per hook.
 *
 * @module
 */

import { join } from "node:path";

/** What the configuration grants one hook beyond its own files. */
export interface HookGrants {
  /** Hosts (`host` or `host:port`) it may connect to. */
  net: readonly string[];
  /** Absolute paths it may read. */
  read: readonly string[];
  /** Absolute paths it may write. */
  write: readonly string[];
  /** Environment variables it may read (passed through from Postern's environment). */
  env: readonly string[];
  /** Programs it may run. A program runs outside the sandbox. */
  run: readonly string[];
}

/** No grants at all. */
export const NO_GRANTS: HookGrants = { net: [], read: [], write: [], env: [], run: [] };

/** The files of a hook: its module and its private folder. */
export function ownFiles(hooksDir: string, name: string): string[] {
  return [join(hooksDir, `${name}.ts`), join(hooksDir, name)];
}

/**
 * The `deno run` flags for a hook, up to (not including) the script.
 * `maxMemoryBytes` caps the V8 heap; a hook that exceeds it ends its worker.
 */
export function sandboxFlags(
  hooksDir: string,
  name: string,
  grants: HookGrants,
  maxMemoryBytes: number,
): string[] {
  const flags = [
    "run",
    // Never ask on a terminal: what is not granted is denied.
    "--no-prompt",
    // Only local modules: remote and npm imports would read from and write
    // to caches outside the sandbox.
    "--no-remote",
    "--no-npm",
    // A deno.json near the configuration must not change how hooks run.
    "--no-config",
    "--no-lock",
    "--quiet",
    `--allow-read=${[...ownFiles(hooksDir, name), ...grants.read].map(quoteFlag).join(",")}`,
  ];
  const lists: Array<[string, readonly string[]]> = [
    ["--allow-net", grants.net],
    ["--allow-write", grants.write],
    ["--allow-env", grants.env],
    ["--allow-run", grants.run],
  ];
  for (const [flag, values] of lists) {
    if (values.length > 0) flags.push(`${flag}=${values.map(quoteFlag).join(",")}`);
  }
  const mebibytes = Math.max(16, Math.floor(maxMemoryBytes / (1024 * 1024)));
  flags.push(`--v8-flags=--max-old-space-size=${mebibytes}`);
  return flags;
}

/**
 * What deno takes of a worker's data limit before the hook allocates
 * anything, measured on Linux x86_64 with deno 2.9: V8 reserves 512 MiB of
 * code space as private writable memory, and the runtime, its heap and the
 * thread stacks bring an idle worker to about 550 MiB of it, of which only
 * some 45 MiB is resident. Each V8 platform thread beyond the first adds an
 * 8 MiB stack (V8 starts one per CPU but one, up to 16), hence the per-CPU
 * term.
 */
export const DATA_MARGIN_BYTES = 608 * 1024 * 1024;
const STACK_BYTES_PER_CPU = 8 * 1024 * 1024;

/**
 * The data limit (RLIMIT_DATA) of a worker: `maxMemoryBytes` plus the
 * margin deno needs for itself on a machine with `cpus` processors.
 */
export function dataLimitBytes(maxMemoryBytes: number, cpus: number): number {
  const platformThreads = Math.min(16, Math.max(1, cpus - 1));
  return maxMemoryBytes + DATA_MARGIN_BYTES + (platformThreads - 1) * STACK_BYTES_PER_CPU;
}

/**
 * How much lower than Postern's a worker's scheduling priority is (nice(1)
 * steps). A hook that computes in a loop, between calls where no timeout
 * watches it, or in every worker at once, would otherwise take the CPUs
 * from Postern's own sessions as an equal; at 10 steps below, the kernel
 * gives Postern about ten times the hook's share whenever both want a CPU,
 * and the hook all that Postern leaves.
 */
export const WORKER_NICE = 10;

/**
 * `argv` run under a data limit and at a lower priority: through
 * `/bin/sh`, which sets RLIMIT_DATA (`ulimit -d`, in KiB) and then becomes
 * the program through `nice -n` {@linkcode WORKER_NICE} (when `nice` is
 * installed; without it the program runs at Postern's priority), so the pid
 * is the program's and every thread it starts inherits the priority.
 *
 * Why RLIMIT_DATA: since Linux 4.7 it counts every private writable
 * mapping, so it bounds what a hook allocates however it does it (V8 heap,
 * ArrayBuffers, WebAssembly memory, Web Workers and `node:worker_threads`,
 * each with its own heap), in the kernel, at the moment of the allocation.
 * The V8 heap limit covers the heap only, and a resident-size check after
 * the fact lets a fast allocation through. V8's large reservations that are
 * not writable (the pointer cage, WebAssembly's guard regions) do not count;
 * RLIMIT_AS would count them and cannot work with V8. What happens at the
 * limit: an ArrayBuffer or WebAssembly memory that does not fit throws a
 * RangeError in the hook; a heap, a Web Worker or a thread that does not
 * fit ends the worker. A hook's resident memory stays below
 * `maxMemoryBytes` plus about 100 MiB (most of the margin is reserved, not
 * used; measured: a peak of 159 MiB at a max_memory of 64 MiB, however the
 * hook allocated). Elsewhere than Linux the argv is returned as it is.
 */
export function withDataLimit(argv: string[], limitBytes: number, os: string): string[] {
  if (os !== "linux") return argv;
  const kib = Math.ceil(limitBytes / 1024);
  // A lower hard limit inherited from Postern stays: it is stricter.
  const script = 'ulimit -d "$1" 2>/dev/null; shift; ' +
    `command -v nice >/dev/null 2>&1 && exec nice -n ${WORKER_NICE} "$@"; exec "$@"`;
  return ["/bin/sh", "-c", script, "sh", String(kib), ...argv];
}

/**
 * Deno splits permission lists on commas; a literal comma in a path is
 * written twice.
 */
function quoteFlag(value: string): string {
  return value.replaceAll(",", ",,");
}

/** The environment of a worker: what deno itself needs, plus granted variables. */
export function workerEnv(
  grants: HookGrants,
  lookup: (name: string) => string | undefined,
): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  // Deno keeps its transpile cache under DENO_DIR (default: the user's cache directory).
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME", "PATH", ...grants.env]) {
    const value = lookup(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}
