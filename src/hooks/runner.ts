/**
 * The hook runner: finds the hooks in the configuration's `hooks/` folder,
 * runs each in its form (module hook in sandboxed deno workers, or an
 * executable when the configuration allows it), and swaps in fresh workers
 * within a second of a change to a hook's files.
 *
 * @module
 */

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  HOOK_POINTS,
  type HookPoint,
  type PostDataInput,
  type PreDeliveryAttemptInput,
} from "../../hooks/mod.ts";
import { sealDescriptors } from "../runtime/mod.ts";
import type { TreeWatch } from "../policy/watcher.ts";
import type { FoundDeno } from "./find_deno.ts";
import {
  callAliasExists,
  callAliasResolve,
  callPostData,
  callPreDeliveryAttempt,
  type ExecContext,
} from "./hook_calls.ts";
import { discoverHook, watchHooks } from "./hook_discovery.ts";
import {
  findHookDeno,
  type InstallContext,
  type InstalledHook,
  installHook,
} from "./hook_install.ts";
import type { HookRunnerOptions, HooksConfig, HookSettings, HookStatus } from "./hook_settings.ts";
import {
  type AliasExistsVerdict,
  type AliasResolveVerdict,
  postDataOutcome,
  type PostDataVerdict,
} from "./points.ts";
import type { CallOutcome } from "./worker.ts";
import { WORKER_SOURCE } from "./worker_source.ts";

export {
  type HookRunnerOptions,
  type HooksConfig,
  type HookSettings,
  HookSetupError,
  type HookStatus,
} from "./hook_settings.ts";

/** Runs the hooks of one configuration directory. */
export class HookRunner {
  #options: HookRunnerOptions;
  #hooksDir: string;
  #installed = new Map<HookPoint, InstalledHook>();
  #deno: FoundDeno | undefined;
  #bootstrap: string;
  #watch: TreeWatch | undefined;
  #refreshing: Promise<void> = Promise.resolve();
  /** A refresh failed part way: some hooks may run under older settings. */
  #refreshOwed = false;
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
    try {
      await runner.#refresh(true);
    } catch (err) {
      // The hooks installed before the one that cannot run would keep their
      // workers running beside a server that never starts.
      runner.close();
      throw err;
    }
    if (options.watch !== false) {
      runner.#watch = watchHooks(hooksDir, () => void runner.#queueRefresh());
    }
    return runner;
  }

  /**
   * Applies new hook settings (a policy reload). A hook whose settings
   * changed gets fresh workers, with fresh state, under the new grants and
   * limits; the others keep running untouched.
   */
  reconfigure(config: HooksConfig): Promise<void> {
    // The same settings again are news only after a refresh that failed
    // part way, and left some hooks under the settings before.
    if (!this.#refreshOwed && JSON.stringify(config) === JSON.stringify(this.#options.config)) {
      return this.#refreshing;
    }
    if (config.deno !== this.#options.config.deno) this.#deno = undefined;
    this.#options = { ...this.#options, config };
    if (this.#options.configDir === undefined) return this.#refreshing;
    return this.#queueRefresh();
  }

  /**
   * Runs a refresh after those already queued. A refresh that fails is
   * logged and ends there: left rejected, the chain would skip every later
   * change of the hooks and of their settings until a restart. The next
   * reconfigure() then refreshes even with the same settings.
   */
  #queueRefresh(): Promise<void> {
    this.#refreshing = this.#refreshing.then(() => this.#refresh(false)).then(() => {
      this.#refreshOwed = false;
    }, (err) => {
      this.#refreshOwed = true;
      try {
        this.#options.logger.error("refreshing the hooks failed; the hooks in place stay", {
          error: err instanceof Error ? err.message : String(err),
        });
      } catch {
        // The log itself failing leaves nothing better to do here.
      }
    });
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
    const verdict = await callPostData(installed, this.#exec("post-data"), input, open);
    this.#count("post-data", postDataOutcome(verdict), started);
    return verdict;
  }

  /** Runs the alias-resolve hook for `address`; undefined when there is none. */
  async aliasResolve(address: string): Promise<AliasResolveVerdict | undefined> {
    const installed = this.#installed.get("alias-resolve");
    if (!installed) return undefined;
    const started = performance.now();
    const verdict = await callAliasResolve(installed, this.#exec("alias-resolve"), address);
    this.#count("alias-resolve", verdict.ok ? "ok" : "failure", started);
    return verdict;
  }

  /** Runs the alias-exists hook for `address`; undefined when there is none. */
  async aliasExists(address: string): Promise<AliasExistsVerdict | undefined> {
    const installed = this.#installed.get("alias-exists");
    if (!installed) return undefined;
    const started = performance.now();
    const verdict = await callAliasExists(installed, this.#exec("alias-exists"), address);
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
    const outcome = await callPreDeliveryAttempt(installed, input);
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

  /** How an executable hook of `point` runs now. */
  #exec(point: HookPoint): ExecContext {
    const settings: HookSettings = this.#options.config.points[point];
    return { env: this.#options.env, cwd: this.#cwd(), timeoutMs: settings.timeoutMs };
  }

  /** Installs, replaces or removes hooks whose files changed. */
  async #refresh(atStart: boolean): Promise<void> {
    for (const point of HOOK_POINTS) {
      if (this.#closed) return;
      const found = await discoverHook(this.#hooksDir, point, this.#options.logger);
      // Closed while looking: start no worker that nothing would stop.
      if (this.#closed) return;
      // The settings are part of what is compared: new grants need new workers.
      if (found) found.print += `\n${JSON.stringify(this.#settingsKey(point))}`;
      const current = this.#installed.get(point);
      if (current?.print === found?.print) continue;
      if (!found) {
        if (current?.form === "module") current.pool.close();
        this.#installed.delete(point);
        if (current) this.#options.logger.info("hook removed", { hook: point });
        continue;
      }
      let installed: InstalledHook;
      try {
        installed = await installHook(this.#installContext(), point, found);
      } catch (err) {
        if (atStart) throw err;
        const error = err instanceof Error ? err.message : String(err);
        this.#options.logger.error("hook cannot run", { hook: point, error });
        installed = { form: "broken", error, print: found.print };
      }
      this.#installed.set(point, installed);
      // The old workers go only now, once calls reach the new hook (their
      // calls in flight finish): closed before the install, which awaits
      // the check of the binary's deno, they refused the calls in between
      // ("the hook was unloaded").
      if (current?.form === "module") current.pool.close();
    }
  }

  /** What installing a hook needs: the deno found once, and whether the runner closed. */
  #installContext(): InstallContext {
    return {
      options: this.#options,
      hooksDir: this.#hooksDir,
      bootstrap: this.#bootstrap,
      deno: (hookPath) => (this.#deno ??= findHookDeno(this.#options, hookPath)),
      closed: () => this.#closed,
    };
  }

  /** The deno that runs module hooks, once a module hook has needed one. */
  get deno(): FoundDeno | undefined {
    return this.#deno;
  }
}
