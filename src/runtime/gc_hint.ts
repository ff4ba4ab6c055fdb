/**
 * A nudge to the garbage collector while mail flows. JavaScriptCore (Bun)
 * lets its heap grow with a steady rate of allocation and collects late:
 * the binary reached 135-136 MB resident at 20 concurrent senders. Asked
 * to collect (without waiting for it) at most every 50 ms while messages
 * arrive, it peaked at 116-120 MB, with no change in throughput that
 * alternated rounds could show. `Bun.gc()` also has mimalloc give back
 * the pages it no longer uses.
 *
 * V8 (Deno) collects on its own budget and needs no nudge. A quiet server
 * is never woken: the collection is asked for only after work.
 *
 * @module
 */

/** Asks for one collection `delayMs` after the first of any run of notes. */
export class GcHint {
  #collect: () => void;
  #delayMs: number;
  #armed = false;

  /** `collect` asks the runtime for a collection; it must not block long. */
  constructor(collect: () => void, delayMs: number) {
    this.#collect = collect;
    this.#delayMs = delayMs;
  }

  /** Notes work done: a collection is asked for within `delayMs`, once. */
  readonly note = (): void => {
    if (this.#armed) return;
    this.#armed = true;
    const timer = setTimeout(() => {
      this.#armed = false;
      this.#collect();
    }, this.#delayMs);
    // A pending nudge never keeps the process alive.
    (timer as { unref?: () => void }).unref?.();
  };
}
