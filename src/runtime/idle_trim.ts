/**
 * Gives memory back once the server has gone quiet. On Bun: a full
 * collection and `Bun.shrink()` (JavaScriptCore's "shrink footprint":
 * compiled code dropped, the heap collected, free pages handed back to the
 * system), once after each spell of ten minutes without mail.
 *
 * Why: JavaScriptCore keeps what a burst of mail made it allocate and
 * compile until memory runs short, so a server that has gone quiet holds it
 * for nothing. Measured with the compiled binary after 3000 small messages
 * at 20 concurrent senders: 85.5 MB resident (36.1 MB anonymous) 70 s later
 * without the trim, 70.3 MB (18.6 MB) with it. A full collection alone gave
 * nothing back (89 MB). Postfix gets the same effect by letting idle smtpd
 * processes exit (`max_idle`).
 *
 * The price is paid by the mail that comes next, whose code is compiled
 * again from the start: the next 2000 messages at c=1 took 2.26-2.35 ms of
 * CPU each instead of 1.83-1.86 ms (about 1 s of CPU in all), and the
 * first session 10-18 ms instead of 4-8 ms. With a spell of one minute the
 * benchmark, whose cells come minutes apart, paid it in every cell. So the
 * spell is ten minutes: a server that is busy now and then keeps its
 * compiled code, one that has really gone quiet gives the memory back. It
 * runs once per spell, counted from the last message queued; it can come
 * during a DATA transfer longer than that, and the full collection then
 * holds the event loop up for tens of milliseconds (70 ms with half a
 * million live objects, on Bun 1.4.5), once.
 *
 * It does not lower the figure right after start-up: trimming then gave
 * back 3 MB of heap and paged in 3 MB of the collector's code, which an
 * idle server had not run yet.
 *
 * @module
 */

/** The clock and timer {@linkcode IdleTrim} uses; tests pass their own. */
export interface TrimTimers {
  /** Milliseconds on a clock that only goes forward. */
  now(): number;
  /** Calls `callback` once, `ms` from now. */
  set(callback: () => void, ms: number): void;
}

const realTimers: TrimTimers = {
  now: () => performance.now(),
  set(callback, ms) {
    const handle = setTimeout(callback, ms);
    // A pending trim never keeps the process alive.
    (handle as { unref?: () => void }).unref?.();
  },
};

/**
 * Runs a trim once after each quiet spell. A note costs a clock read: the
 * one timer of a spell, when it fires early, waits again for the rest.
 */
export class IdleTrim {
  #trim: () => void;
  #idleMs: number;
  #timers: TrimTimers;
  #lastNote = 0;
  #armed = false;

  /** `trim` gives memory back; it runs `idleMs` after the last {@linkcode note}. */
  constructor(trim: () => void, idleMs: number, timers: TrimTimers = realTimers) {
    this.#trim = trim;
    this.#idleMs = idleMs;
    this.#timers = timers;
  }

  /** Notes work: the trim waits for a quiet spell after it. */
  readonly note = (): void => {
    this.#lastNote = this.#timers.now();
    if (this.#armed) return;
    this.#armed = true;
    this.#wait(this.#idleMs);
  };

  #wait(ms: number): void {
    this.#timers.set(() => {
      const quiet = this.#timers.now() - this.#lastNote;
      if (quiet < this.#idleMs) return this.#wait(this.#idleMs - quiet);
      this.#armed = false;
      this.#trim();
    }, ms);
  }
}
