/**
 * The workers of one module hook. Calls go to the least busy worker; a
 * worker that crashes is replaced on the next call; a hook that fails to
 * load fails every call at once (no respawn storm) until its files change,
 * and says so in the log at most once per second.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { cpus, platform } from "node:os";
import { pathToFileURL } from "node:url";
import type { Counters, Logger } from "../log/mod.ts";
import {
  dataLimitBytes,
  type HookGrants,
  sandboxFlags,
  withDataLimit,
  workerEnv,
} from "./sandbox.ts";
import { type DeadlineClock, Deadlines, REAL_CLOCK } from "./deadlines.ts";
import { loadErrorSummary } from "./load_error.ts";
import type { OutputLimits } from "./output_budget.ts";
import { type CallOutcome, HookWorker, type WorkerEvents } from "./worker.ts";
import { answerShared, type SharedStore } from "./shared_state.ts";

/** How one module hook runs. */
export interface ModulePoolOptions {
  /** Hook point name, such as `post-data`. */
  name: string;
  /** The configuration's `hooks/` folder. */
  hooksDir: string;
  /** Path of the hook module, `<hooksDir>/<name>.ts`. */
  entry: string;
  /** The deno executable. */
  deno: string;
  /** Path of the worker bootstrap (see `worker_source.ts`). */
  bootstrap: string;
  grants: HookGrants;
  maxMemoryBytes: number;
  /** What each worker's output may put in the log each second. */
  outputLimits: OutputLimits;
  /** Worker processes, each with its own module state. */
  workers: number;
  /** Time allowed per call, start-up of a worker included. */
  timeoutMs: number;
  /**
   * The clock and timer the calls' time limits, the start-up back-off and
   * the rate of load-error log lines run on. Default: the real ones; a test
   * passes its own to decide when a call times out or a back-off ends.
   */
  clock?: DeadlineClock | undefined;
  /** Working directory of the workers (the configuration directory). */
  cwd: string;
  /** Reads Postern's environment, for the variables granted to the hook. */
  env: (name: string) => string | undefined;
  logger: Logger;
  /** Where worker starts, timeouts and unexpected exits are counted. */
  counters?: Counters;
  /** Where the hook's output lines go instead of the application log (its own log). */
  output?: ((line: string) => void) | undefined;
  /** The fleet's shared state, for `shared.*` (keys namespaced by `name`). */
  shared?: SharedStore | undefined;
}

/**
 * The data limit (see `withDataLimit` in `sandbox.ts`) holds every
 * allocation on Linux; as a second line, and the only one elsewhere, the
 * resident size of each worker is also checked this often, and a worker
 * above its memory limit plus this margin (deno's own runtime) is ended.
 */
const RSS_CHECK_MS = 200;
const RSS_MARGIN_BYTES = 128 * 1024 * 1024;

/** A worker that exits before loading the hook, without a load error, keeps it down this long. */
const START_FAILURE_BACKOFF_MS = 2000;

/** A hook that cannot be loaded says so in the log at most this often. */
const LOAD_ERROR_LOG_INTERVAL_MS = 1000;

/** The workers of one module hook. */
export class ModulePool {
  readonly options: ModulePoolOptions;
  #workers: HookWorker[] = [];
  /** Why the hook is down, until when (on `#clock`; Infinity: until its files change). */
  #broken: { error: string; until: number } | undefined;
  /** When the load error was last logged; none yet, whatever the clock's origin. */
  #lastBrokenLog = -Infinity;
  #closed = false;
  #argv: string[];
  #env: Record<string, string>;
  #restarts = 0;
  #events: WorkerEvents;
  #rssTimer: ReturnType<typeof setInterval> | undefined;
  #deadlines: Deadlines;
  #clock: DeadlineClock;

  /** Creates the pool and starts its workers, so load errors show at once. */
  constructor(options: ModulePoolOptions) {
    this.options = options;
    this.#argv = withDataLimit(
      [
        options.deno,
        ...sandboxFlags(options.hooksDir, options.name, options.grants, options.maxMemoryBytes),
        options.bootstrap,
        pathToFileURL(options.entry).href,
      ],
      dataLimitBytes(options.maxMemoryBytes, cpus().length),
      platform(),
    );
    this.#env = workerEnv(options.grants, options.env);
    this.#clock = options.clock ?? REAL_CLOCK;
    this.#deadlines = new Deadlines(options.timeoutMs, this.#clock);
    this.#events = {
      loadError: (_worker, error) => {
        this.#broken = { error, until: Infinity };
        this.#logBroken();
      },
      output: (worker, line) => {
        if (options.output) {
          options.output(`${new Date().toISOString()} pid=${worker.pid} ${line.slice(0, 1000)}\n`);
          return;
        }
        options.logger.info("hook output", {
          hook: options.name,
          pid: worker.pid,
          line: line.slice(0, 1000),
        });
      },
      exited: (worker, detail, expected) => this.#exited(worker, detail, expected),
      shared: (_worker, request) => answerShared(options.shared, options.name, request),
      idle: () => {},
      outputOver: (worker) => {
        options.logger.warn("hook output is over its budget; it is dropped until it calms down", {
          hook: options.name,
          pid: worker.pid,
          lines_per_second: options.outputLimits.linesPerSecond,
          bytes_per_second: options.outputLimits.bytesPerSecond,
        });
      },
      outputDropped: (worker, dropped, ended) => {
        const labels = { hook: options.name };
        options.counters?.inc("hook_output_dropped_lines_total", labels, dropped.lines);
        options.counters?.inc("hook_output_dropped_bytes_total", labels, dropped.bytes);
        if (ended) {
          options.logger.warn("hook output was dropped", {
            hook: options.name,
            pid: worker.pid,
            lines: ended.lines,
            bytes: ended.bytes,
            seconds: ended.seconds,
          });
        }
      },
      outputExcess: (worker, cause) => {
        options.counters?.inc("hook_output_kills_total", { hook: options.name });
        options.logger.error("hook worker wrote too much output; it is ended", {
          hook: options.name,
          pid: worker.pid,
          cause,
        });
      },
      protocolError: (worker, detail) => {
        options.counters?.inc("hook_protocol_errors_total", { hook: options.name });
        options.logger.error("hook worker broke the protocol; it is ended", {
          hook: options.name,
          pid: worker.pid,
          cause: detail,
        });
      },
    };
    for (let i = 0; i < options.workers; i++) this.#spawn();
    this.#rssTimer = setInterval(() => void this.#checkMemory(), RSS_CHECK_MS);
    (this.#rssTimer as { unref?: () => void }).unref?.();
  }

  /** Workers running now. */
  get workerCount(): number {
    return this.#workers.length;
  }

  /** Workers started to replace crashed or retired ones. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The load error that keeps the hook down, if any. */
  get loadError(): string | undefined {
    return this.#broken && this.#clock.now() < this.#broken.until ? this.#broken.error : undefined;
  }

  /**
   * Calls the hook with `input` (and the message, for post-data). Never
   * throws: every failure is an outcome.
   */
  call(input: unknown, message?: AsyncIterable<Uint8Array>): Promise<CallOutcome> {
    if (this.#closed) {
      return Promise.resolve({ ok: false, failure: "crash", error: "the hook was unloaded" });
    }
    const broken = this.loadError;
    if (broken !== undefined) {
      this.#logBroken();
      return Promise.resolve({ ok: false, failure: "load_error", error: broken });
    }
    const worker = this.#pick();
    return new Promise((resolve) => {
      let settled = false;
      const settle = (outcome: CallOutcome) => {
        if (settled) return;
        settled = true;
        deadline.clear();
        resolve(outcome);
      };
      // Started before the call is sent: a worker that is already dead
      // settles the call at once.
      const deadline = this.#deadlines.start(() => {
        if (settled) return;
        worker.abandon(id);
        this.options.counters?.inc("hook_timeouts_total", { hook: this.options.name });
        this.options.logger.warn("hook timed out; its worker is retired", {
          hook: this.options.name,
          pid: worker.pid,
          timeout_ms: this.options.timeoutMs,
        });
        settle({
          ok: false,
          failure: "timeout",
          error: `no result within ${this.options.timeoutMs} ms`,
        });
      });
      const id = worker.send({ input, ...(message ? { message } : {}), settle });
    });
  }

  /**
   * Unloads the hook: no new calls; calls in flight finish (up to their
   * timeout), then the workers end.
   */
  close(): void {
    this.#closed = true;
    for (const worker of this.#workers) worker.retire();
  }

  /** Ends every worker now. */
  kill(): void {
    this.#closed = true;
    clearInterval(this.#rssTimer);
    for (const worker of this.#workers) worker.stop();
    this.#deadlines.close();
  }

  /** Ends workers whose resident memory is over the limit (Linux; elsewhere a no-op). */
  async #checkMemory(): Promise<void> {
    if (this.#workers.length === 0) {
      if (this.#closed) clearInterval(this.#rssTimer);
      return;
    }
    const limit = this.options.maxMemoryBytes + RSS_MARGIN_BYTES;
    for (const worker of this.#workers) {
      const rss = await residentBytes(worker.pid);
      if (rss === undefined || rss <= limit) {
        continue;
      }
      this.options.logger.error("hook worker is over its memory limit; it is ended", {
        hook: this.options.name,
        pid: worker.pid,
        rss_mib: Math.round(rss / 1048576),
        limit_mib: Math.round(limit / 1048576),
      });
      this.options.counters?.inc("hook_memory_kills_total", { hook: this.options.name });
      worker.terminate(`resident memory ${Math.round(rss / 1048576)} MiB over the limit`);
    }
  }

  #pick(): HookWorker {
    const live = this.#workers.filter((w) => !w.retiring);
    if (live.length < this.options.workers) {
      this.#restarts++;
      return this.#spawn();
    }
    let best = live[0]!;
    for (const worker of live) if (worker.load < best.load) best = worker;
    return best;
  }

  #spawn(): HookWorker {
    const worker = new HookWorker(
      this.#argv,
      this.#env,
      this.options.cwd,
      this.#events,
      this.options.outputLimits,
    );
    this.#workers.push(worker);
    this.options.counters?.inc("hook_worker_starts_total", { hook: this.options.name });
    this.options.logger.debug("hook worker started", { hook: this.options.name, pid: worker.pid });
    return worker;
  }

  #exited(worker: HookWorker, detail: string, expected: boolean): void {
    this.#workers = this.#workers.filter((w) => w !== worker);
    if (expected || this.#closed) return;
    this.options.counters?.inc("hook_worker_crashes_total", { hook: this.options.name });
    this.options.logger.error("hook worker exited", {
      hook: this.options.name,
      pid: worker.pid,
      cause: detail,
    });
    // A worker that dies before it could load the hook (out of memory at
    // import, a bad deno) would otherwise be respawned for every call.
    if (!worker.loaded && this.loadError === undefined) {
      this.#broken = {
        error: `worker exited during start-up: ${detail}`,
        until: this.#clock.now() + START_FAILURE_BACKOFF_MS,
      };
    }
  }

  #logBroken(): void {
    const now = this.#clock.now();
    if (now - this.#lastBrokenLog < LOAD_ERROR_LOG_INTERVAL_MS || !this.#broken) return;
    this.#lastBrokenLog = now;
    this.options.logger.error("hook cannot be loaded; its calls fail until it is fixed", {
      hook: this.options.name,
      file: this.options.entry,
      // Not deno's code frame, which quotes the hook's source (load_error.ts).
      error: loadErrorSummary(this.#broken.error),
    });
  }
}

/** Resident set size of a process from /proc, or undefined where there is no /proc. */
async function residentBytes(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kib = status.match(/^VmRSS:\s+(\d+) kB/m)?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    return undefined;
  }
}
