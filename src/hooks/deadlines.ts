/**
 * Time limits of a hook's calls with one timer for all of them.
 *
 * Why not a `setTimeout` per call: at tens of thousands of calls a second,
 * arming and clearing a timer for each was a measurable part of a call's
 * cost on Deno (about 6 µs of its ~25). Every call of a pool has the same
 * time limit, so calls expire in the order they started: a queue in start
 * order and one timer armed for its oldest open call is enough.
 *
 * @module
 */

/**
 * The time and the timer that deadlines run on. The default is the
 * process's monotonic clock and its timers; a test passes its own to decide
 * when a deadline expires instead of waiting for it.
 */
export interface DeadlineClock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /**
   * Calls `fire` once, `delayMs` from now, and returns a handle for
   * `clearTimeout` (not undefined); the timer must not keep a process alive
   * that has nothing else to do.
   */
  setTimeout(fire: () => void, delayMs: number): unknown;
  /** Cancels a timer that `setTimeout` returned (undefined: none). */
  clearTimeout(timer: unknown): void;
}

/** `performance.now()` and the runtime's timers, unreferenced. */
export const REAL_CLOCK: DeadlineClock = {
  now: () => performance.now(),
  setTimeout(fire, delayMs) {
    const timer = setTimeout(fire, delayMs);
    (timer as { unref?: () => void }).unref?.();
    return timer;
  },
  clearTimeout(timer) {
    clearTimeout(timer as ReturnType<typeof setTimeout> | undefined);
  },
};

/** A started call's place in the queue. */
export interface Deadline {
  /** Marks the call finished: it will not expire. */
  clear(): void;
}

interface Entry extends Deadline {
  at: number;
  open: boolean;
  expire: () => void;
}

/** Expires calls that run longer than `limitMs`, in start order, with one timer. */
export class Deadlines {
  #limitMs: number;
  #clock: DeadlineClock;
  #queue: Entry[] = [];
  #head = 0;
  #timer: unknown;

  /** `clock` decides when calls expire (tests pass their own). */
  constructor(limitMs: number, clock: DeadlineClock = REAL_CLOCK) {
    this.#limitMs = limitMs;
    this.#clock = clock;
  }

  /** Calls still open (started and neither cleared nor expired). */
  get open(): number {
    let count = 0;
    for (let i = this.#head; i < this.#queue.length; i++) if (this.#queue[i]!.open) count++;
    return count;
  }

  /** Starts the clock of a call; `expire` runs once if it is not cleared in time. */
  start(expire: () => void): Deadline {
    const entry: Entry = {
      at: this.#clock.now() + this.#limitMs,
      open: true,
      expire,
      clear: () => {
        entry.open = false;
        this.#dropFinished();
      },
    };
    this.#queue.push(entry);
    if (this.#timer === undefined) this.#arm(this.#limitMs);
    return entry;
  }

  /**
   * Moves the head past finished calls, so the queue holds only the calls
   * from the oldest open one on (calls mostly finish in order).
   */
  #dropFinished(): void {
    while (this.#head < this.#queue.length && !this.#queue[this.#head]!.open) this.#head++;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Stops the timer; open calls no longer expire. */
  close(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#head = 0;
  }

  #arm(delayMs: number): void {
    this.#timer = this.#clock.setTimeout(() => this.#fire(), Math.max(0, Math.ceil(delayMs)));
  }

  /**
   * Expires the calls that are due and arms the timer for the next one. The
   * timer is not cleared when calls finish: it fires once per time limit at
   * most and finds nothing, which costs less than a timer per call.
   */
  #fire(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    const due: Entry[] = [];
    while (this.#head < this.#queue.length) {
      const entry = this.#queue[this.#head]!;
      if (entry.open && entry.at > now) break;
      this.#head++;
      if (entry.open) {
        entry.open = false;
        due.push(entry);
      }
    }
    this.#dropFinished();
    const next = this.#queue[this.#head];
    if (next) this.#arm(next.at - now);
    for (const entry of due) entry.expire();
  }
}
