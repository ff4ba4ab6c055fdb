/**
 * Installing a discovered hook: an executable only where the configuration
 * allows unsandboxed hooks, a module hook as a pool of sandboxed deno
 * workers under the deno that Postern finds (or carries).
 *
 * @module
 */

import type { HookPoint } from "../../hooks/mod.ts";
import { findDeno, type FoundDeno } from "./find_deno.ts";
import type { DiscoveredHook } from "./hook_discovery.ts";
import { type HookRunnerOptions, HookSetupError } from "./hook_settings.ts";
import { ModulePool } from "./module_pool.ts";

/** A hook point's hook as the runner holds it; `print` is its discovery fingerprint. */
export type InstalledHook =
  | { form: "module"; pool: ModulePool; print: string }
  | { form: "exec"; path: string; print: string }
  | { form: "broken"; error: string; print: string };

/** What installing a hook needs from the runner. */
export interface InstallContext {
  options: HookRunnerOptions;
  hooksDir: string;
  /** Path of the worker bootstrap the runner wrote. */
  bootstrap: string;
  /** The deno of module hooks, found on first need (the runner keeps it). */
  deno(hookPath: string): FoundDeno;
  /** True once the runner has closed: then no worker may start. */
  closed(): boolean;
}

/**
 * Installs `found` at `point`: checks that it may run, and starts the
 * workers of a module hook.
 *
 * @throws {HookSetupError} when the hook cannot run.
 */
export async function installHook(
  context: InstallContext,
  point: HookPoint,
  found: DiscoveredHook,
): Promise<InstalledHook> {
  const options = context.options;
  const settings = options.config.points[point];
  const logger = options.logger;
  if (found.form === "exec") {
    if (!options.config.allowUnsandboxedExec) {
      throw new HookSetupError(
        `Cannot run executable hook "${found.path}": executable hooks run outside any sandbox; ` +
          `set hooks.allow_unsandboxed_exec: true to allow them, or write hooks/${point}.ts`,
      );
    }
    logger.warn("executable hook runs unsandboxed", { hook: point, path: found.path });
    return { form: "exec", path: found.path, print: found.print };
  }
  const deno = context.deno(found.path);
  if (deno.source === "embedded") {
    await prepareEmbedded(options, found.path);
    // Closed meanwhile: start no worker that nothing would stop.
    if (context.closed()) {
      return { form: "broken", error: "hook runner closed", print: found.print };
    }
  }
  const pool = new ModulePool({
    name: point,
    hooksDir: context.hooksDir,
    entry: found.path,
    deno: deno.path,
    bootstrap: context.bootstrap,
    grants: settings.allow,
    maxMemoryBytes: settings.maxMemoryBytes,
    outputLimits: settings.outputLimits,
    workers: settings.workers,
    timeoutMs: settings.timeoutMs,
    cwd: options.configDir ?? ".",
    env: options.env,
    logger,
    counters: options.counters,
    output: options.outputFor?.(point),
    shared: options.shared,
  });
  logger.info("hook loaded", {
    hook: point,
    path: found.path,
    workers: settings.workers,
    net: settings.allow.net.join(",") || "none",
    read: settings.allow.read.join(",") || "own files",
    write: settings.allow.write.join(",") || "none",
    env: settings.allow.env.join(",") || "none",
    run: settings.allow.run.join(",") || "none",
  });
  return { form: "module", pool, print: found.print };
}

/**
 * Finds the deno that runs module hooks (configured, DENO_BIN, PATH, the
 * running executable, or the binary's own), and says which in the log.
 *
 * @throws {HookSetupError} when there is none.
 */
export function findHookDeno(options: HookRunnerOptions, hookPath: string): FoundDeno {
  let found;
  try {
    found = findDeno({
      configured: options.config.deno,
      env: options.env,
      execPath: options.execPath,
      embedded: options.embeddedDeno?.path,
    });
  } catch (err) {
    throw new HookSetupError(err instanceof Error ? err.message : String(err));
  }
  if (!found) {
    throw new HookSetupError(
      `Cannot run TypeScript hook "${hookPath}": deno was not found (set hooks.deno, ` +
        `DENO_BIN or PATH); TypeScript hooks only run inside deno's sandbox`,
    );
  }
  options.logger.info("hooks run under deno", {
    deno: found.path,
    found: found.source,
    ...(found.source === "embedded" ? { version: options.embeddedDeno!.version } : {}),
  });
  return found;
}

/** Checks (or extracts) the binary's own deno before workers start from it. */
async function prepareEmbedded(options: HookRunnerOptions, hookPath: string): Promise<void> {
  try {
    await options.embeddedDeno!.prepare();
  } catch (err) {
    throw new HookSetupError(
      `Cannot run TypeScript hook "${hookPath}": ${err instanceof Error ? err.message : err}`,
    );
  }
}
