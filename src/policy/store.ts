/**
 * The policy in force: the whole configuration as one immutable snapshot
 * with an epoch number, swapped atomically when a reload validates, and
 * left alone when it does not (the last good policy stays in force).
 *
 * Reloads are serialized: a request that arrives while one is loading runs
 * once more afterwards, so a burst of saves settles on the last one without
 * a reload per save.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import type { Counters, Logger } from "../log/mod.ts";
import { restartOnlyChanges } from "./restart.ts";

/** One validated policy. */
export interface PolicySnapshot {
  /** 1 for the policy loaded at start-up, one more for each swap. */
  readonly epoch: number;
  /** When it was swapped in. */
  readonly loadedAt: Date;
  /** The configuration; settings that need a restart keep their running values. */
  readonly config: Config;
}

/** What the admin API shows of the policy. */
export interface PolicyStatus {
  epoch: number;
  loadedAt: Date;
  /** The error of the last reload attempt, until a reload succeeds. */
  lastError: { message: string; at: Date } | undefined;
  /** Settings changed on disk that take effect only after a restart. */
  pendingRestart: string[];
  reloads: { ok: number; failed: number };
}

/** Options of {@linkcode PolicyStore}. */
export interface PolicyStoreOptions {
  /** Reads and validates the configuration; throws on an invalid one. */
  load: () => Promise<Config>;
  logger: Logger;
  counters: Counters;
  /** Milliseconds between two logs of a failing policy. Default: 1000. */
  errorLogIntervalMs?: number;
  clock?: () => Date;
}

/** Why a reload was asked for, for the log. */
export type ReloadCause = "watch" | "signal" | "api" | "start" | "confirm";

/** Holds the policy in force and reloads it. */
export class PolicyStore {
  #options: PolicyStoreOptions;
  #current: PolicySnapshot;
  #listeners: Array<(next: PolicySnapshot, previous: PolicySnapshot) => void> = [];
  #failureListeners: Array<(error: unknown) => void> = [];
  #lastError: { message: string; at: Date } | undefined;
  #pendingRestart: string[] = [];
  #reloads = { ok: 0, failed: 0 };
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #lastErrorLog = -Infinity;
  #errorLogTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** Starts with `initial`, the configuration validated at start-up (epoch 1). */
  constructor(initial: Config, options: PolicyStoreOptions) {
    this.#options = options;
    this.#current = { epoch: 1, loadedAt: this.#now(), config: initial };
  }

  /** The policy in force now. A caller keeps the snapshot for as long as it needs one view. */
  get current(): PolicySnapshot {
    return this.#current;
  }

  /** The epoch, load time, last error and restart-only changes. */
  status(): PolicyStatus {
    return {
      epoch: this.#current.epoch,
      loadedAt: this.#current.loadedAt,
      lastError: this.#lastError,
      pendingRestart: [...this.#pendingRestart],
      reloads: { ...this.#reloads },
    };
  }

  /**
   * Calls `listener` after every swap, with the new and the previous
   * snapshot. Listeners must not throw; one that does is logged.
   */
  onSwap(listener: (next: PolicySnapshot, previous: PolicySnapshot) => void): void {
    this.#listeners.push(listener);
  }

  /** Calls `listener` with the error of every reload that failed. */
  onFailure(listener: (error: unknown) => void): void {
    this.#failureListeners.push(listener);
  }

  /**
   * Reloads the configuration; resolves once a reload that started after
   * this call has finished (whether it swapped or kept the last good one).
   */
  reload(cause: ReloadCause): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (!this.#running) {
      // Callers start reloads and forget them (`void store.reload(…)` on a
      // save or SIGHUP): a reload that throws past load(), which should not
      // happen, is a failed reload, not an unhandled rejection that would
      // end the process.
      this.#running = this.#reloadOnce(cause).catch((err) => this.#unexpected(err, cause))
        .finally(() => {
          this.#running = undefined;
        });
      return this.#running;
    }
    // One more reload after the one in progress serves every request made
    // meanwhile: it reads the files as they are when it starts. The one in
    // progress never rejects (above), so this one always runs: once, a throw
    // past load() left it queued for good, answering every later request
    // with that old failure.
    this.#queued ??= this.#running.then(() => {
      this.#queued = undefined;
      return this.reload(cause);
    });
    return this.#queued;
  }

  /** Stops logging; later reloads do nothing. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#errorLogTimer);
  }

  async #reloadOnce(cause: ReloadCause): Promise<void> {
    const started = performance.now();
    let loaded: Config;
    try {
      loaded = await this.#options.load();
    } catch (err) {
      if (this.#closed) return;
      this.#failed(err instanceof Error ? err.message : String(err), cause);
      for (const listener of this.#failureListeners) {
        try {
          listener(err);
        } catch {
          // A listener's trouble must not hide the reload's.
        }
      }
      return;
    }
    if (this.#closed) return;
    const previous = this.#current;
    const { changed, config } = restartOnlyChanges(previous.config, loaded);
    for (const field of changed) {
      if (!this.#pendingRestart.includes(field)) {
        this.#options.logger.warn("setting changed; it takes effect after a restart", { field });
      }
    }
    this.#pendingRestart = changed;
    const next: PolicySnapshot = { epoch: previous.epoch + 1, loadedAt: this.#now(), config };
    this.#current = next;
    const recovered = this.#lastError !== undefined;
    this.#lastError = undefined;
    clearTimeout(this.#errorLogTimer);
    this.#errorLogTimer = undefined;
    this.#reloads.ok++;
    this.#options.counters.inc("policy_reloads_total", { result: "ok" });
    for (const listener of this.#listeners) {
      try {
        listener(next, previous);
      } catch (err) {
        this.#options.logger.error("applying the policy failed in part", {
          epoch: next.epoch,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    this.#options.logger.info("policy reloaded", {
      epoch: next.epoch,
      cause,
      ms: Math.round((performance.now() - started) * 10) / 10,
      domains: config.domains.size,
      ...(recovered ? { recovered: true } : {}),
    });
  }

  /** A reload that threw outside load(): counted and logged as failed, if that still works. */
  #unexpected(err: unknown, cause: ReloadCause): void {
    const message = err instanceof Error ? err.message : String(err);
    try {
      this.#failed(message, cause);
    } catch {
      try {
        this.#options.logger.error("policy reload failed", { cause, error: message });
      } catch {
        // Nothing is left to report it with.
      }
    }
  }

  #failed(message: string, cause: ReloadCause): void {
    this.#lastError = { message, at: this.#now() };
    this.#reloads.failed++;
    this.#options.counters.inc("policy_reloads_total", { result: "error" });
    // At most one log line per interval while the policy stays broken; the
    // line written at the end of an interval is the latest error.
    const interval = this.#options.errorLogIntervalMs ?? 1000;
    const since = performance.now() - this.#lastErrorLog;
    if (since >= interval) {
      this.#logError(cause);
    } else if (this.#errorLogTimer === undefined) {
      this.#errorLogTimer = setTimeout(() => {
        this.#errorLogTimer = undefined;
        if (this.#lastError && !this.#closed) this.#logError(cause);
      }, interval - since);
      (this.#errorLogTimer as { unref?: () => void }).unref?.();
    }
  }

  #logError(cause: ReloadCause): void {
    // A line due from an earlier failure is this one: a timer that ran late
    // would otherwise write a second line in the same interval.
    clearTimeout(this.#errorLogTimer);
    this.#errorLogTimer = undefined;
    this.#lastErrorLog = performance.now();
    this.#options.logger.error("policy reload failed; the last good policy stays in force", {
      epoch: this.#current.epoch,
      cause,
      error: this.#lastError?.message ?? "",
    });
  }

  #now(): Date {
    return this.#options.clock?.() ?? new Date();
  }
}
