/**
 * Where the deno that runs module hooks is. TypeScript hooks always run
 * under deno, whose permission flags are their sandbox, also when Postern
 * runs on Bun: without deno, a TypeScript hook is never run at all. The
 * release binary carries its own deno (see `hook_runtime.ts`).
 *
 * @module
 */

import { accessSync, constants, statSync } from "node:fs";
import { basename, delimiter, join } from "node:path";

/** Where {@linkcode findDeno} may look. */
export interface DenoSearch {
  /** `hooks.deno` from the configuration. */
  configured?: string | undefined;
  /** Reads an environment variable (`DENO_BIN`, `PATH`). */
  env: (name: string) => string | undefined;
  /** The executable of the running process. */
  execPath: string;
  /**
   * Where the binary's own deno goes once extracted, when the binary
   * carries one; the caller prepares it before use.
   */
  embedded?: string | undefined;
}

/** The deno found, and how. */
export interface FoundDeno {
  path: string;
  source: "config" | "DENO_BIN" | "embedded" | "PATH" | "running deno";
}

/**
 * Finds deno: the configured path, then `$DENO_BIN`, then the deno that
 * the binary carries (pinned at build time, so a deno on `$PATH` does not
 * replace it), then `deno` on `$PATH`, then the running executable when it is deno itself (a `deno
 * compile` binary or Bun is not). A configured path or `DENO_BIN` that is
 * not executable is an error rather than a reason to look elsewhere.
 *
 * @throws {Error} naming the path when a configured deno is not executable.
 */
export function findDeno(search: DenoSearch): FoundDeno | undefined {
  if (search.configured) {
    requireExecutable(search.configured, "hooks.deno");
    return { path: search.configured, source: "config" };
  }
  const fromEnv = search.env("DENO_BIN");
  if (fromEnv) {
    requireExecutable(fromEnv, "DENO_BIN");
    return { path: fromEnv, source: "DENO_BIN" };
  }
  if (search.embedded) return { path: search.embedded, source: "embedded" };
  for (const dir of (search.env("PATH") ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, "deno");
    if (isExecutable(candidate)) return { path: candidate, source: "PATH" };
  }
  const name = basename(search.execPath);
  if ((name === "deno" || name === "deno.exe") && isExecutable(search.execPath)) {
    return { path: search.execPath, source: "running deno" };
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function requireExecutable(path: string, what: string): void {
  if (!isExecutable(path)) {
    throw new Error(`Cannot use deno at "${path}" (from ${what}): not an executable file`);
  }
}
