/**
 * The hook runner: finds the hooks in the configuration's `hooks/` folder,
 * runs each in its form (module hook in sandboxed deno workers, or an
 * executable when the configuration allows it), and swaps in fresh workers
 * within a second of a change to a hook's files.
 *
 * @module
 */

import { accessSync, constants } from "node:fs";
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  HOOK_POINTS,
  type HookPoint,
  type PostDataInput,
  type PreDeliveryAttemptInput,
} from "../../hooks/mod.ts";
import type { Counters, Logger } from "../log/mod.ts";
import { sealDescriptors } from "../runtime/mod.ts";
import { fingerprint, type TreeWatch, watchTree } from "../policy/watcher.ts";
import { execHookEnv, runExecHook } from "./exec_hook.ts";
import { findDeno, type FoundDeno } from "./find_deno.ts";
import type { EmbeddedDeno } from "./hook_runtime.ts";
import { ModulePool } from "./module_pool.ts";
import {
  aliasExistsFromExec,
  aliasExistsFromModule,
  type AliasExistsVerdict,
  aliasResolveFromExec,
  aliasResolveFromModule,
  type AliasResolveVerdict,
  postDataFromExec,
  postDataFromModule,
  postDataOutcome,
  type PostDataVerdict,
} from "./points.ts";
import type { OutputLimits } from "./output_budget.ts";
import type { HookGrants } from "./sandbox.ts";
import type { CallOutcome } from "./worker.ts";
import { WORKER_SOURCE } from "./worker_source.ts";

/** Settings of one hook point. */
export interface HookSettings {
  timeoutMs: number;
  workers: number;
  maxMemoryBytes: number;
  /** What each worker's output may put in the log each second. */
  outputLimits: OutputLimits;
  allow: HookGrants;
}

/** The `hooks` section of the configuration. */
export interface HooksConfig {
  /** Path of deno, when configured. */
  deno: string | undefined;
  /** Run executable hooks, which no sandbox contains. */
  allowUnsandboxedExec: boolean;
  points: Record<HookPoint, HookSettings>;
}

/** What the runner needs. */
export interface HookRunnerOptions {
  /** The configuration directory; without one there are no hooks. */
  configDir: string | undefined;
  dataDir: string;
  config: HooksConfig;
  logger: Logger;
  counters: Counters;
  env: (name: string) => string | undefined;
  /** The running executable, which may be deno itself. */
  execPath: string;
  /** Watch the hooks folder for changes. Default: true. */
  watch?: boolean;
  /** A hook point's own log for its output; default: the application log. */
  outputFor?: (point: HookPoint) => ((line: string) => void) | undefined;
  /** The deno that the binary carries, when it carries one. */
  embeddedDeno?: EmbeddedDeno | undefined;
}

/** A hook set up at start-up cannot run (no deno, executable not allowed). */
export class HookSetupError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "HookSetupError";
  }
}

type Installed =
  | { form: "module"; pool: ModulePool; print: string }
  | { form: "exec"; path: string; print: string }
  | { form: "broken"; error: string; print: string };

/** Status of one hook point, for logs and the admin API. */
export interface HookStatus {
  hook: HookPoint;
  form: "module" | "exec" | "broken";
  workers?: number;
  restarts?: number;
  error?: string;
}

/** Runs the hooks of one configuration directory. */
export class HookRunner {
  #options: HookRunnerOptions;
  #hooksDir: string;
  #installed = new Map<HookPoint, Installed>();
  #deno: FoundDeno | undefined;
  #bootstrap: string;
  #watch: TreeWatch | undefined;
  #refreshing: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: HookRunnerOptions, hooksDir: string) {
    this.#options = options;
    this.#hooksDir = hooksDir;
    this.#bootstrap = join(options.dataDir, "run", "hook_worker.js");
  }

  /**
   * Starts the hooks found now, and watches for changes.
   *
   * @throws {HookSetupError} when a hook present at start-up cannot run.
   */
  static async start(options: HookRunnerOptions): Promise<HookRunner> {
    const hooksDir = join(options.configDir ?? "", "hooks");
    const runner = new HookRunner(options, hooksDir);
    if (options.configDir === undefined) return runner;
    // Every spawn does this again; here it is said once in the log.
    const sealed = sealDescriptors();
    if (sealed.error !== undefined) {
      options.logger.error("hooks may inherit Postern's descriptors", { error: sealed.error });
    } else if (sealed.marked.length > 0) {
      options.logger.info("inherited descriptors kept from hooks (close-on-exec)", {
        fds: sealed.marked.join(","),
      });
    }
    await mkdir(join(options.dataDir, "run"), { recursive: true, mode: 0o700 });
    await writeFile(runner.#bootstrap, WORKER_SOURCE, { mode: 0o600 });
    await runner.#refresh(true);
    if (options.watch !== false) {
      runner.#watch = watchTree(hooksDir, () => {
        runner.#refreshing = runner.#refreshing.then(() => runner.#refresh(false));
      });
    }
    return runner;
  }

  /**
   * Applies new hook settings (a policy reload). A hook whose settings
   * changed gets fresh workers, with fresh state, under the new grants and
   * limits; the others keep running untouched.
   */
  reconfigure(config: HooksConfig): Promise<void> {
    if (JSON.stringify(config) === JSON.stringify(this.#options.config)) {
      return this.#refreshing;
    }
    if (config.deno !== this.#options.config.deno) this.#deno = undefined;
    this.#options = { ...this.#options, config };
    if (this.#options.configDir === undefined) return this.#refreshing;
    this.#refreshing = this.#refreshing.then(() => this.#refresh(false));
    return this.#refreshing;
  }

  /** The hooks folder watched. */
  get hooksDir(): string {
    return this.#hooksDir;
  }

  /** True when a hook is installed at `point`. */
  has(point: HookPoint): boolean {
    return this.#installed.has(point);
  }

  /** Status of every installed hook. */
  status(): HookStatus[] {
    return [...this.#installed].map(([hook, installed]) =>
      installed.form === "module"
        ? {
          hook,
          form: "module",
          workers: installed.pool.workerCount,
          restarts: installed.pool.restarts,
          ...(installed.pool.loadError ? { error: installed.pool.loadError } : {}),
        }
        : installed.form === "exec"
        ? { hook, form: "exec" }
        : { hook, form: "broken", error: installed.error }
    );
  }

  /**
   * Runs the post-data hook on a message; undefined when there is none.
   * `open` streams the message (it is called at most once).
   */
  async postData(
    input: PostDataInput,
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<PostDataVerdict | undefined> {
    const started = performance.now();
    const installed = this.#installed.get("post-data");
    if (!installed) return undefined;
    const settings = this.#settings("post-data");
    let verdict: PostDataVerdict;
    if (installed.form === "module") {
      verdict = postDataFromModule(await installed.pool.call(input, lazily(open)));
    } else if (installed.form === "exec") {
      const result = await runExecHook({
        path: installed.path,
        args: [],
        env: execHookEnv(this.#options.env, this.#cwd(), input),
        cwd: this.#cwd(),
        stdin: open(),
        timeoutMs: settings.timeoutMs,
      });
      verdict = postDataFromExec(result, settings.timeoutMs);
    } else {
      verdict = {
        kind: "refuse",
        permanent: false,
        text: "Message could not be checked, try again later",
        cause: `broken: ${installed.error}`,
      };
    }
    this.#count("post-data", postDataOutcome(verdict), started);
    return verdict;
  }

  /** Runs the alias-resolve hook for `address`; undefined when there is none. */
  async aliasResolve(address: string): Promise<AliasResolveVerdict | undefined> {
    const installed = this.#installed.get("alias-resolve");
    if (!installed) return undefined;
    const started = performance.now();
    const settings = this.#settings("alias-resolve");
    let verdict: AliasResolveVerdict;
    if (installed.form === "module") {
      verdict = aliasResolveFromModule(await installed.pool.call({ address }));
    } else if (installed.form === "exec") {
      const result = await runExecHook({
        path: installed.path,
        args: [address],
        env: execHookEnv(this.#options.env, this.#cwd()),
        cwd: this.#cwd(),
        timeoutMs: settings.timeoutMs,
      });
      verdict = aliasResolveFromExec(result, settings.timeoutMs);
    } else {
      verdict = { ok: false, cause: `broken: ${installed.error}` };
    }
    this.#count("alias-resolve", verdict.ok ? "ok" : "failure", started);
    return verdict;
  }

  /** Runs the alias-exists hook for `address`; undefined when there is none. */
  async aliasExists(address: string): Promise<AliasExistsVerdict | undefined> {
    const installed = this.#installed.get("alias-exists");
    if (!installed) return undefined;
    const started = performance.now();
    const settings = this.#settings("alias-exists");
    let verdict: AliasExistsVerdict;
    if (installed.form === "module") {
      verdict = aliasExistsFromModule(await installed.pool.call({ address }));
    } else if (installed.form === "exec") {
      const result = await runExecHook({
        path: installed.path,
        args: [address],
        env: execHookEnv(this.#options.env, this.#cwd()),
        cwd: this.#cwd(),
        timeoutMs: settings.timeoutMs,
      });
      verdict = aliasExistsFromExec(result, settings.timeoutMs);
    } else {
      verdict = { exists: false, cause: `broken: ${installed.error}` };
    }
    this.#count("alias-exists", verdict.cause ? "failure" : verdict.exists ? "yes" : "no", started);
    if (verdict.cause) {
      this.#options.logger.warn("alias-exists hook failed; the address is taken as unknown", {
        address,
        cause: verdict.cause,
      });
    }
    return verdict;
  }

  /**
   * Runs the pre-delivery-attempt hook (a module hook only: its state lives
   * in its one worker); undefined when there is none.
   */
  async preDeliveryAttempt(input: PreDeliveryAttemptInput): Promise<CallOutcome | undefined> {
    const installed = this.#installed.get("pre-delivery-attempt");
    if (!installed) return undefined;
    const started = performance.now();
    const outcome: CallOutcome = installed.form === "module"
      ? await installed.pool.call(input)
      : installed.form === "broken"
      ? { ok: false, failure: "load_error", error: installed.error }
      : {
        ok: false,
        failure: "load_error",
        error: "the pre-delivery-attempt hook must be a TypeScript module (hooks/" +
          "pre-delivery-attempt.ts): its state lives in one worker",
      };
    this.#count("pre-delivery-attempt", outcome.ok ? "ok" : "failure", started);
    return outcome;
  }

  /** Stops watching and ends every worker. */
  close(): void {
    this.#closed = true;
    this.#watch?.close();
    for (const installed of this.#installed.values()) {
      if (installed.form === "module") installed.pool.kill();
    }
    this.#installed.clear();
  }

  /** Counts a call by outcome and records how long it took. */
  #count(hook: HookPoint, outcome: string, started: number): void {
    this.#options.counters.inc("hook_calls", { hook, outcome });
    this.#options.counters.observe(
      "hook_call_seconds",
      { hook },
      (performance.now() - started) / 1000,
    );
  }

  #cwd(): string {
    return this.#options.configDir ?? ".";
  }

  #settingsKey(point: HookPoint): unknown[] {
    const config = this.#options.config;
    return [config.deno, config.allowUnsandboxedExec, config.points[point]];
  }

  #settings(point: HookPoint): HookSettings {
    return this.#options.config.points[point];
  }

  /** Installs, replaces or removes hooks whose files changed. */
  async #refresh(atStart: boolean): Promise<void> {
    for (const point of HOOK_POINTS) {
      if (this.#closed) return;
      const found = await this.#discover(point);
      // Closed while looking: start no worker that nothing would stop.
      if (this.#closed) return;
      // The settings are part of what is compared: new grants need new workers.
      if (found) found.print += `\n${JSON.stringify(this.#settingsKey(point))}`;
      const current = this.#installed.get(point);
      if (current?.print === found?.print) continue;
      if (current?.form === "module") current.pool.close();
      if (!found) {
        this.#installed.delete(point);
        if (current) this.#options.logger.info("hook removed", { hook: point });
        continue;
      }
      let installed: Installed;
      try {
        installed = await this.#install(point, found);
      } catch (err) {
        if (atStart) throw err;
        const error = err instanceof Error ? err.message : String(err);
        this.#options.logger.error("hook cannot run", { hook: point, error });
        installed = { form: "broken", error, print: found.print };
      }
      this.#installed.set(point, installed);
    }
  }

  async #install(
    point: HookPoint,
    found: { form: "module" | "exec"; path: string; print: string },
  ): Promise<Installed> {
    const settings = this.#settings(point);
    const logger = this.#options.logger;
    if (found.form === "exec") {
      if (!this.#options.config.allowUnsandboxedExec) {
        throw new HookSetupError(
          `Cannot run executable hook "${found.path}": executable hooks run outside any sandbox; ` +
            `set hooks.allow_unsandboxed_exec: true to allow them, or write hooks/${point}.ts`,
        );
      }
      logger.warn("executable hook runs unsandboxed", { hook: point, path: found.path });
      return { form: "exec", path: found.path, print: found.print };
    }
    this.#deno ??= this.#findDeno(found.path);
    const deno = this.#deno;
    if (deno.source === "embedded") {
      await this.#prepareEmbedded(found.path);
      // Closed meanwhile: start no worker that nothing would stop.
      if (this.#closed) return { form: "broken", error: "hook runner closed", print: found.print };
    }
    const pool = new ModulePool({
      name: point,
      hooksDir: this.#hooksDir,
      entry: found.path,
      deno: deno.path,
      bootstrap: this.#bootstrap,
      grants: settings.allow,
      maxMemoryBytes: settings.maxMemoryBytes,
      outputLimits: settings.outputLimits,
      workers: settings.workers,
      timeoutMs: settings.timeoutMs,
      cwd: this.#cwd(),
      env: this.#options.env,
      logger,
      counters: this.#options.counters,
      output: this.#options.outputFor?.(point),
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

  /** The deno that runs module hooks, once a module hook has needed one. */
  get deno(): FoundDeno | undefined {
    return this.#deno;
  }

  /** Checks (or extracts) the binary's own deno before workers start from it. */
  async #prepareEmbedded(hookPath: string): Promise<void> {
    try {
      await this.#options.embeddedDeno!.prepare();
    } catch (err) {
      throw new HookSetupError(
        `Cannot run TypeScript hook "${hookPath}": ${err instanceof Error ? err.message : err}`,
      );
    }
  }

  #findDeno(hookPath: string): FoundDeno {
    let found;
    try {
      found = findDeno({
        configured: this.#options.config.deno,
        env: this.#options.env,
        execPath: this.#options.execPath,
        embedded: this.#options.embeddedDeno?.path,
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
    this.#options.logger.info("hooks run under deno", {
      deno: found.path,
      found: found.source,
      ...(found.source === "embedded" ? { version: this.#options.embeddedDeno!.version } : {}),
    });
    return found;
  }

  async #discover(
    point: HookPoint,
  ): Promise<{ form: "module" | "exec"; path: string; print: string } | undefined> {
    const modulePath = join(this.#hooksDir, `${point}.ts`);
    const execPath = join(this.#hooksDir, point);
    const moduleInfo = await stat(modulePath).catch(() => undefined);
    const execInfo = await stat(execPath).catch(() => undefined);
    if (moduleInfo?.isFile()) {
      if (execInfo?.isFile()) {
        this.#options.logger.warn("both forms of a hook exist; the module hook is used", {
          hook: point,
        });
      }
      const print =
        `module\n${moduleInfo.size}:${moduleInfo.mtimeMs}:${moduleInfo.ino}:${moduleInfo.mode}\n` +
        await fingerprint(join(this.#hooksDir, point));
      return { form: "module", path: modulePath, print };
    }
    if (execInfo?.isFile()) {
      if (!isExecutable(execPath)) {
        this.#options.logger.warn("hook file is not executable; ignored", { path: execPath });
        return undefined;
      }
      return {
        form: "exec",
        path: execPath,
        print: `exec\n${execInfo.mtimeMs}:${execInfo.ino}:${execInfo.mode}`,
      };
    }
    return undefined;
  }
}

/**
 * An iterable that opens its source on the first read, so that a call
 * which fails before the hook reads (or never reads) opens no file.
 */
function lazily(open: () => AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      let source: AsyncIterator<Uint8Array> | undefined;
      return {
        next() {
          source ??= open()[Symbol.asyncIterator]();
          return source.next();
        },
        async return() {
          await source?.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
