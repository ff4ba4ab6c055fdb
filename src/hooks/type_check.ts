/**
 * Type-checks the TypeScript hooks of a configuration with `deno check`,
 * for `postern check`. The hooks are checked in a scratch copy of the
 * hooks folder, with the SDK's types as `mod.ts` beside them and one
 * folder up (where the examples import them from), so that a hook written
 * against the SDK checks without the SDK being installed in the
 * configuration. Nothing is fetched: remote and npm imports are refused.
 *
 * @module
 */

import { cp, lstat, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOOK_POINTS } from "../../hooks/mod.ts";
import { spawnProcess } from "../runtime/mod.ts";
import { SDK_TYPES_SOURCE } from "./sdk_types.ts";

/** The outcome of {@linkcode typeCheckHooks}. */
export interface TypeCheckResult {
  /** The hook files checked (paths in the configuration). */
  checked: string[];
  /** True when every checked hook type-checks. */
  ok: boolean;
  /** deno's report, with paths shown as they are in the configuration. */
  report: string;
}

/** Files copied for the check: what a hook may import. */
const MODULE_FILE = /\.(ts|tsx|mts|js|mjs|jsx|json)$/;

/** Time allowed for `deno check`. */
const CHECK_TIMEOUT_MS = 120_000;

/**
 * Checks `hooks/<point>.ts` of `configDir` with `deno`. `env` gives the
 * variables deno needs to find its cache (HOME, DENO_DIR, XDG_CACHE_HOME).
 */
export async function typeCheckHooks(
  configDir: string,
  deno: string,
  env: (name: string) => string | undefined,
): Promise<TypeCheckResult> {
  const hooksDir = join(configDir, "hooks");
  const present: string[] = [];
  for (const point of HOOK_POINTS) {
    const info = await stat(join(hooksDir, `${point}.ts`)).catch(() => undefined);
    if (info?.isFile()) present.push(point);
  }
  if (present.length === 0) return { checked: [], ok: true, report: "" };

  const scratch = await mkdtemp(join(tmpdir(), "postern-check-"));
  try {
    const copy = join(scratch, "hooks");
    // Only what a hook can import: folders and module files, no symlinks
    // (which could lead anywhere, a FIFO included) and no package trees.
    await cp(hooksDir, copy, {
      recursive: true,
      filter: async (source) => {
        const info = await lstat(source);
        if (info.isDirectory()) return !/(^|\/)(node_modules|\.git)$/.test(source);
        return info.isFile() && MODULE_FILE.test(source);
      },
    });
    await writeFile(join(copy, "mod.ts"), SDK_TYPES_SOURCE);
    await writeFile(join(scratch, "mod.ts"), SDK_TYPES_SOURCE);
    const childEnv: Record<string, string> = { NO_COLOR: "1" };
    for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = env(name);
      if (value !== undefined) childEnv[name] = value;
    }
    const result = await spawnProcess({
      argv: [
        deno,
        "check",
        "--no-config",
        "--no-lock",
        "--no-remote",
        "--no-npm",
        "--quiet",
        ...present.map((point) => join(copy, `${point}.ts`)),
      ],
      env: childEnv,
      cwd: scratch,
      stdin: (async function* () {})(),
      timeoutMs: CHECK_TIMEOUT_MS,
    });
    const output = `${result.stdout}${result.stderr}`;
    return {
      checked: present.map((point) => join(hooksDir, `${point}.ts`)),
      ok: result.exitCode === 0 && !result.timedOut,
      report: output.replaceAll(`file://${copy}`, hooksDir).replaceAll(copy, hooksDir).trim(),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
