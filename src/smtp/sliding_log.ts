/**
 * An exact sliding window for rare events (failed logins): per key, the
 * times of its events within the window, newest last.
 *
 * The message and connection limits (`rate_limits.ts`) estimate a sliding
 * window from two fixed ones, which is cheap at their volume but lets a
 * burst through at a window's edge: with a limit of 10 an hour, failures at
 * the end of one fixed hour and then through the next fitted 18 password
 * checks into one hour. A brute-force guard is read as "never more than N
 * in any hour", and failed logins are few, so here each key keeps the times
 * themselves: at most as many as the limit needs (the newest N decide
 * whether N lie within the window), dropped once they leave the window.
 *
 * Memory is bounded as the estimating counter bounds it: keys idle for the
 * window are swept once a window, the least recently used key is forgotten
 * past 100 000 keys, and likewise past a million times held in all (so a
 * large limit cannot multiply the bound).
 *
 * @module
 */

/** Keys remembered before the least recently used are forgotten (as `SlidingWindowCounter`). */
const MAX_KEYS = 100_000;
/** Times held over all keys before the least recently used keys are forgotten. */
const MAX_TIMES = 1_000_000;

/** Times of events per key within a sliding window, counted exactly. */
export class SlidingLog {
  #windowMs: number;
  #clock: () => number;
  /** Per key, its times within the window, oldest first; the map in order of last use. */
  #times = new Map<string, number[]>();
  #held = 0;
  #lastSweep = 0;

  /** Keeps events for `windowMs`, reading time (ms) from `clock`. */
  constructor(windowMs: number, clock: () => number = Date.now) {
    this.#windowMs = windowMs;
    this.#clock = clock;
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#times.size;
  }

  /** Times currently held, over all keys. */
  get held(): number {
    return this.#held;
  }

  /**
   * The events of `key` within the window: those less than the window old.
   * A key asked about counts as used, so that a client being refused keeps
   * its record under a flood of other keys.
   */
  count(key: string): number {
    const now = this.#clock();
    this.#sweep(now);
    const times = this.#times.get(key);
    if (!times) return 0;
    this.#prune(key, times, now);
    if (times.length === 0) return 0;
    this.#touch(key, times);
    return times.length;
  }

  /**
   * Records one event of `key` now, keeping only its newest `keep` times
   * (at least 1): with a limit of N, the newest N decide whether N lie
   * within the window, and older ones can never matter again.
   */
  add(key: string, keep: number): void {
    const now = this.#clock();
    this.#sweep(now);
    const times = this.#times.get(key) ?? [];
    this.#prune(key, times, now);
    times.push(now);
    this.#held++;
    const most = Math.max(1, Math.min(keep, MAX_TIMES));
    while (times.length > most) {
      times.shift();
      this.#held--;
    }
    this.#touch(key, times);
    // Least recently used first; the key just added is the last to go.
    for (const [old, oldTimes] of this.#times) {
      if (this.#times.size <= MAX_KEYS && this.#held <= MAX_TIMES) break;
      this.#held -= oldTimes.length;
      this.#times.delete(old);
    }
  }

  /** Moves `key` to the end of the map, the most recently used. */
  #touch(key: string, times: number[]): void {
    this.#times.delete(key);
    this.#times.set(key, times);
  }

  /** Drops the times of `key` that left the window; forgets the key when none is left. */
  #prune(key: string, times: number[], now: number): void {
    let old = 0;
    while (old < times.length && now - times[old]! >= this.#windowMs) old++;
    if (old > 0) {
      times.splice(0, old);
      this.#held -= old;
    }
    if (times.length === 0) this.#times.delete(key);
  }

  /** Once a window, forgets the keys whose times all left it: bounds memory over time. */
  #sweep(now: number): void {
    if (now - this.#lastSweep < this.#windowMs) return;
    this.#lastSweep = now;
    for (const [key, times] of this.#times) this.#prune(key, times, now);
  }
}
