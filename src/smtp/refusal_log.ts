/**
 * How refusals of one session reach the mail log. A session's first few
 * refusals get a line each, with the address and the reply, which is what
 * a mail admin greps for when a sender asks why a message bounced. Beyond
 * that the session is a flood (a dictionary attack, a spam run, a broken
 * client in a loop): its further refusals are counted, not logged, and one
 * line at the end of the session gives the count, and the error limit's
 * 421 if the session was cut off. So a session of 50,000 refused RCPTs is
 * a handful of lines, not 50,000; the counters still count every refusal.
 *
 * @module
 */

/** Refusals of one session that get a line each; the rest are counted. */
export const REFUSAL_LINES_PER_SESSION = 5;

/** What the end-of-session line reports. */
export interface RefusalSummary {
  /** Refusals in the session, logged or not. */
  rejected: number;
  /** Refusals that got no line of their own. */
  unlogged: number;
  /** Set when the session reached the error limit: its count, and the reply. */
  cut?: { errors: number; reply: string };
}

interface SessionRefusals {
  rejected: number;
  unlogged: number;
  cut?: { errors: number; reply: string };
}

/** Per-session refusal counts; see the module description. */
export class RefusalLog {
  #sessions = new Map<string, SessionRefusals>();

  /** Counts a refusal; true when it gets a line of its own. */
  note(session: string): boolean {
    const entry = this.#entry(session);
    entry.rejected++;
    if (entry.rejected <= REFUSAL_LINES_PER_SESSION) return true;
    entry.unlogged++;
    return false;
  }

  /** The session reached the error limit and is closed with `reply`. */
  cut(session: string, errors: number, reply: string): void {
    this.#entry(session).cut = { errors, reply };
  }

  /**
   * Forgets the session; returns what its end-of-session line reports, or
   * undefined when every refusal had its line and it was not cut off.
   */
  close(session: string): RefusalSummary | undefined {
    const entry = this.#sessions.get(session);
    this.#sessions.delete(session);
    if (!entry || (entry.unlogged === 0 && entry.cut === undefined)) return undefined;
    return {
      rejected: entry.rejected,
      unlogged: entry.unlogged,
      ...(entry.cut ? { cut: entry.cut } : {}),
    };
  }

  #entry(session: string): SessionRefusals {
    let entry = this.#sessions.get(session);
    if (!entry) {
      entry = { rejected: 0, unlogged: 0 };
      this.#sessions.set(session, entry);
    }
    return entry;
  }
}
