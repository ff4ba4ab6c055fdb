/**
 * What a hook worker may write at all, logged or not: past it, the worker
 * is ended (and the next call starts a fresh one).
 *
 * The output budget (`output_budget.ts`) decides what reaches the log, and
 * drops the rest without decoding it; but each read of a worker's pipes
 * still costs Postern a wake-up, a buffer and a pass over the bytes (about
 * 4-25 µs a read under Deno, 13-70 µs under Bun, measured on this 2-CPU
 * machine), so a worker writing as fast as it can took 110 % of a CPU
 * under Deno (68 % under Bun) for as long as it went on. A call's timeout
 * does not bound that: a hook can write from a timer between calls, when
 * no call is in flight for a timeout to watch. Two limits bound it:
 *
 * - Between calls (no call in flight, nor for the last
 *   {@linkcode BETWEEN_CALLS_GRACE_MS}, nor the hook loading), output past
 *   the log budget ends the worker: nothing Postern asked for needs it, and
 *   the log would drop it anyway. Output within the budget (a timer that
 *   logs now and then) is fine. The grace covers what a call printed just
 *   before its answer, which may be read after the answer (two pipes).
 * - At any time, more than {@linkcode READS_FACTOR} times the log's lines
 *   per second in reads (at least {@linkcode MIN_READS_PER_SECOND}), or more
 *   than {@linkcode BYTES_FACTOR} times its bytes per second (at least
 *   {@linkcode MIN_BYTES_PER_SECOND}), in one second ends the worker: just
 *   below that ceiling (900 writes of 1 KiB a second, in a call) Postern
 *   spent 4 % of a CPU under Deno and 3 % under Bun (1-2 % idle), where the
 *   same hook writing as fast as it could took 110 %; a hook with a debug
 *   line in a hot path stays far below it (its lines beyond the budget are
 *   dropped, as before, and it keeps answering). Both follow the log's
 *   budget: an operator who lets 100,000 lines a second into the log lets
 *   a hook print them line by line.
 *
 * @module
 */

import type { OutputLimits } from "./output_budget.ts";

/** A worker may write this many times its log budget's lines in one second... */
export const READS_FACTOR = 5;

/** ...and at least this many times (reads of its pipes, as Postern sees them). */
export const MIN_READS_PER_SECOND = 1000;

/** A worker may write this many times its log budget's bytes in one second... */
export const BYTES_FACTOR = 16;

/** ...and at least this many bytes. */
export const MIN_BYTES_PER_SECOND = 1024 * 1024;

/** How long after its last call a worker's output still counts as that call's. */
export const BETWEEN_CALLS_GRACE_MS = 250;

const WINDOW_MS = 1000;

/** The ceiling of one worker's output. */
export class OutputCeiling {
  readonly maxReadsPerSecond: number;
  readonly maxBytesPerSecond: number;
  #now: () => number;
  #windowStart: number | undefined;
  #reads = 0;
  #bytes = 0;
  /** Busy: a call in flight (or the hook loading); else the time it became idle. */
  #idleSince: number | undefined;

  /** `now` is a monotonic clock in milliseconds (for tests). Starts busy (loading). */
  constructor(limits: OutputLimits, now: () => number = () => performance.now()) {
    this.maxReadsPerSecond = Math.max(MIN_READS_PER_SECOND, READS_FACTOR * limits.linesPerSecond);
    this.maxBytesPerSecond = Math.max(MIN_BYTES_PER_SECOND, BYTES_FACTOR * limits.bytesPerSecond);
    this.#now = now;
  }

  /** The worker has a call in flight (or is loading the hook), or has none. */
  busy(busy: boolean): void {
    if (busy) this.#idleSince = undefined;
    else this.#idleSince ??= this.#now();
  }

  /** True when output now is nobody's: no call in flight, and none for a while. */
  get stray(): boolean {
    return this.#idleSince !== undefined &&
      this.#now() - this.#idleSince >= BETWEEN_CALLS_GRACE_MS;
  }

  /**
   * Counts one read of `bytes` bytes; returns why the worker must end when
   * this read takes its output past the ceiling, else undefined.
   */
  read(bytes: number): string | undefined {
    const now = this.#now();
    if (this.#windowStart === undefined || now - this.#windowStart >= WINDOW_MS) {
      this.#windowStart = now;
      this.#reads = 0;
      this.#bytes = 0;
    }
    this.#reads++;
    this.#bytes += bytes;
    if (this.#reads > this.maxReadsPerSecond) {
      return `its output came in more than ${this.maxReadsPerSecond} writes in one second`;
    }
    if (this.#bytes > this.maxBytesPerSecond) {
      return `it wrote more than ${this.maxBytesPerSecond} bytes of output in one second`;
    }
    return undefined;
  }
}
