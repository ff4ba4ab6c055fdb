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
  #now: () => number;
  #queue: Entry[] = [];
  #head = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `now` is a monotonic clock in milliseconds (for tests). */
  constructor(limitMs: number, now: () => number = () => performance.now()) {
    this.#limitMs = limitMs;
    this.#now = now;
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
      at: this.#now() + this.#limitMs,
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
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#head = 0;
  }

  #arm(delayMs: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(delayMs)));
    // The timer must not keep a process alive that has nothing else to do.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /**
   * Expires the calls that are due and arms the timer for the next one. The
   * timer is not cleared when calls finish: it fires once per time limit at
   * most and finds nothing, which costs less than a timer per call.
   */
  #fire(): void {
    this.#timer = undefined;
    const now = this.#now();
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
