/**
 * The session deadline: how long a client may take to send what it owes.
 *
 * - A command line must arrive complete within `commandTimeoutMs` of the
 *   reply that asked for it, however the bytes trickle in (smtp-server's own
 *   idle timeout measures only silence).
 * - The message of DATA must arrive at `minDataRate` bytes per second at
 *   least: its deadline is `commandTimeoutMs + bytes / minDataRate` after
 *   the 354, so it moves on as data arrives (Postfix's smtpd_min_data_rate).
 * - While Postern works (a handler runs, a message is checked and spooled)
 *   the client owes nothing, and no deadline runs: a 421 then could tell the
 *   client to retry a message that is queued anyway (RFC 5321 section
 *   4.5.3.2 has the client wait minutes for those replies).
 *
 * One timer at most per session: it fires at the earliest moment the
 * deadline can have passed, and is set again when the deadline moved.
 *
 * @module
 */

/** The longest delay a timer can wait: `setTimeout` holds a signed 32-bit count of ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the client owes. */
type Owed =
  | { kind: "nothing" }
  | { kind: "command"; at: number }
  | { kind: "data"; start: number; bytes: () => number; receiving: () => boolean };

/** Settings of {@linkcode SessionDeadline}. */
export interface DeadlineSettings {
  /** Milliseconds for one command line; 0 switches the deadline off. */
  commandTimeoutMs: number;
  /** Bytes per second a message must arrive at, at least (1 or more). */
  minDataRate: number;
}

/** The deadline of one SMTP session. */
export class SessionDeadline {
  #settings: DeadlineSettings;
  #onExpired: () => void;
  #now: () => number;
  #owed: Owed = { kind: "nothing" };
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = 0;
  #stopped = false;

  /** `onExpired` is called once when the client has not delivered in time. */
  constructor(settings: DeadlineSettings, onExpired: () => void, now: () => number = Date.now) {
    this.#settings = settings;
    this.#onExpired = onExpired;
    this.#now = now;
  }

  /** The client owes a command line, from now. */
  awaitCommand(): void {
    this.#owed = { kind: "command", at: this.#now() + this.#settings.commandTimeoutMs };
    this.#schedule();
  }

  /**
   * The client owes a message (after the 354): `bytes` is how much of it
   * has arrived, `receiving` is false once the final dot has.
   */
  awaitData(bytes: () => number, receiving: () => boolean): void {
    this.#owed = { kind: "data", start: this.#now(), bytes, receiving };
    this.#schedule();
  }

  /** The client owes nothing: Postern is working on what it sent. */
  pause(): void {
    this.#owed = { kind: "nothing" };
  }

  /** The session is over. */
  stop(): void {
    this.#stopped = true;
    this.#owed = { kind: "nothing" };
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** When the deadline is now, or undefined when there is none. */
  #due(): number | undefined {
    const owed = this.#owed;
    switch (owed.kind) {
      case "nothing":
        return undefined;
      case "command":
        return owed.at;
      case "data":
        // The final dot is in: the rest is Postern's work.
        if (!owed.receiving()) return undefined;
        return owed.start + this.#settings.commandTimeoutMs +
          owed.bytes() * 1000 / this.#settings.minDataRate;
    }
  }

  #schedule(): void {
    if (this.#stopped || this.#settings.commandTimeoutMs <= 0) return;
    const due = this.#due();
    if (due === undefined) return;
    // A timer that fires earlier finds the deadline moved and sets itself again.
    if (this.#timer !== undefined && this.#timerAt <= due) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = due;
    // A big message at a low rate can be owed for longer than a timer can
    // wait (2^31-1 ms; more fires at once, with a warning, over and over):
    // such a timer fires early and is set again for the rest.
    const delay = Math.min(Math.max(0, due - this.#now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => this.#fire(), delay);
    // A deadline never keeps the process alive.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    const due = this.#due();
    if (due === undefined) return;
    if (this.#now() < due) {
      this.#schedule();
      return;
    }
    this.stop();
    this.#onExpired();
  }
}
