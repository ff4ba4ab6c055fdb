/**
 * A clock for the hook tests that moves only when the test says so: its
 * timers fire inside `advance()`, in the order they are due, and never on
 * their own. A test that drives the deadlines with it decides when a call
 * times out, however slow the machine is.
 *
 * @module
 */

import type { DeadlineClock } from "../../../src/hooks/deadlines.ts";

/** Timers one `advance()` fires at most. */
const MAX_FIRED = 100_000;

interface Timer {
  at: number;
  fire: () => void;
}

/** A {@linkcode DeadlineClock} whose time the test moves. */
export class ManualClock implements DeadlineClock {
  #now = 0;
  #nextId = 1;
  #timers = new Map<number, Timer>();

  /** The time now, in milliseconds (0 at the start). */
  now(): number {
    return this.#now;
  }

  /** Arms a timer for `delayMs` from now; it fires only in `advance()`. */
  setTimeout(fire: () => void, delayMs: number): number {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, delayMs), fire });
    return id;
  }

  /** Disarms a timer; unknown or fired ones are ignored. */
  clearTimeout(timer: unknown): void {
    if (typeof timer === "number") this.#timers.delete(timer);
  }

  /** Timers armed and not yet fired or cleared. */
  get armed(): number {
    return this.#timers.size;
  }

  /**
   * Moves the time on by `ms`, firing each timer that falls due on the way
   * at its own time (earliest first; a timer armed by one that fires counts
   * too, if it is due by the end).
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    // Timers that keep re-arming themselves for now would spin here for
    // ever; a real event loop would spin too, but a test should fail.
    for (let fired = 0;; fired++) {
      if (fired === MAX_FIRED) throw new Error(`${MAX_FIRED} timers fired in one advance()`);
      let next: [number, Timer] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
      }
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fire();
    }
    this.#now = end;
  }
}
