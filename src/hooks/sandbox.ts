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
