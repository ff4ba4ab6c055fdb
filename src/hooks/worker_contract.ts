/**
 * What a module-hook worker and its pool tell each other: the calls the
 * pool sends, their outcomes, and the events the worker reports.
 *
 * @module
 */

import type { DroppedOutput } from "./output_budget.ts";
import type { SharedAnswer } from "./shared_state.ts";
import type { HookWorker } from "./worker.ts";

/** Why a call did not produce a value. */
export type CallFailure = "timeout" | "crash" | "load_error" | "hook_error" | "protocol";

/** The outcome of one call. */
export type CallOutcome =
  | { ok: true; value: unknown }
  | { ok: false; failure: CallFailure; error: string };

/** A call on its way to a worker. */
export interface WorkerCall {
  input: unknown;
  /** The message, read chunk by chunk as the hook pulls it. */
  message?: AsyncIterable<Uint8Array>;
  settle: (outcome: CallOutcome) => void;
}

/** What a worker tells its pool. */
export interface WorkerEvents {
  /** The hook module failed to load (syntax error, denied import, no default export). */
  loadError(worker: HookWorker, error: string): void;
  /** A line the hook printed. */
  output(worker: HookWorker, line: string): void;
  /** The process ended; `expected` when the pool asked for it. */
  exited(worker: HookWorker, detail: string, expected: boolean): void;
  /** The worker has nothing in flight and may be ended if retiring. */
  idle(worker: HookWorker): void;
  /**
   * The worker broke the protocol (a malformed or oversized frame, or one
   * that no call asked for) and is being ended.
   */
  protocolError(worker: HookWorker, detail: string): void;
  /**
   * A call asks for shared state (`shared.increment`, `get`, `set`); the
   * answer goes back to that call. Absent: every request fails.
   */
  shared?(worker: HookWorker, request: Record<string, unknown>): Promise<SharedAnswer | undefined>;
  /** The hook's output went over its budget: what follows is dropped. */
  outputOver(worker: HookWorker): void;
  /**
   * Output dropped since the last report (every second while dropping);
   * `ended` carries the totals of a flood that is over.
   */
  outputDropped(
    worker: HookWorker,
    dropped: DroppedOutput,
    ended: (DroppedOutput & { seconds: number }) | undefined,
  ): void;
  /**
   * The hook's output went past its ceiling (see `output_ceiling.ts`): the
   * worker is being ended, for `cause`.
   */
  outputExcess(worker: HookWorker, cause: string): void;
}
