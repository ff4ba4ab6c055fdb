/**
 * Rate limits on clients: connections per client address per minute, and
 * messages (MAIL FROM commands, as Postfix's anvil counts them) per client
 * address and per authenticated user per hour.
 *
 * Counting uses a sliding window estimated from two fixed windows (the
 * current one and the one before, weighted by how much of it still lies
 * within the window): constant memory per key, no burst of twice the limit
 * at a window boundary. The limits themselves come from the policy in force
 * at each call, so they change live; the counts survive a reload. Failed
 * logins, few but a brute-force guard, are counted exactly instead
 * (`sliding_log.ts`, used by `login.ts`).
 *
 * @module
 */

import { clientKey } from "../net/client_key.ts";
import { reply, type SmtpReply } from "./reply.ts";

// Its home is src/net/, shared with the HTTP servers; exported here too for
// the callers that have always taken it from here.
export { clientKey };

/** Limits per client; 0 switches a limit off. */
export interface RateLimitSettings {
  /** New connections from one client address per minute. */
  connectionsPerIpPerMinute: number;
  /** Messages (MAIL FROM) from one client address per hour. */
  messagesPerIpPerHour: number;
  /** Messages (MAIL FROM) from one authenticated user per hour. */
  messagesPerUserPerHour: number;
  /** Failed AUTH attempts from one client address per hour. */
  failedLoginsPerIpPerHour: number;
}

/** Keys remembered per counter before the oldest are forgotten. */
const MAX_KEYS = 100_000;

/** A sliding-window event counter keyed by string. */
export class SlidingWindowCounter {
  #windowMs: number;
  #clock: () => number;
  #entries = new Map<string, { start: number; current: number; previous: number }>();
  #lastSweep = 0;

  /** Counts events within `windowMs`, reading time from `clock`. */
  constructor(windowMs: number, clock: () => number = Date.now) {
    this.#windowMs = windowMs;
    this.#clock = clock;
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Counts one event for `key` and returns true, or returns false without
   * counting when `limit` events already happened within the window. A
   * limit of 0 or less allows everything and counts nothing.
   */
  hit(key: string, limit: number): boolean {
    if (limit <= 0) return true;
    const now = this.#clock();
    this.#sweep(now);
    const entry = this.#rolled(this.#entries.get(key), now);
    // Re-inserting keeps the map in order of last use, oldest first.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    if (this.#estimate(entry, now) >= limit) return false;
    entry.current++;
    return true;
  }

  /** The events counted for `key` within the window now (the sliding estimate). */
  count(key: string): number {
    const now = this.#clock();
    return this.#estimate(this.#rolled(this.#entries.get(key), now), now);
  }

  /** `entry` moved to the window that holds `now` (a fresh one if absent or stale). */
  #rolled(
    entry: { start: number; current: number; previous: number } | undefined,
    now: number,
  ): { start: number; current: number; previous: number } {
    const windowStart = now - (now % this.#windowMs);
    if (!entry || windowStart - entry.start >= 2 * this.#windowMs) {
      return { start: windowStart, current: 0, previous: 0 };
    }
    if (entry.start !== windowStart) {
      return { start: windowStart, current: 0, previous: entry.current };
    }
    return entry;
  }

  /** The previous window's count weighted by how much of it still overlaps, plus the current. */
  #estimate(entry: { start: number; current: number; previous: number }, now: number): number {
    const overlap = 1 - (now - entry.start) / this.#windowMs;
    return entry.previous * overlap + entry.current;
  }

  /** Forgets keys idle for two windows; bounds memory under a flood of addresses. */
  #sweep(now: number): void {
    if (now - this.#lastSweep >= this.#windowMs) {
      this.#lastSweep = now;
      for (const [key, entry] of this.#entries) {
        if (now - entry.start >= 2 * this.#windowMs) this.#entries.delete(key);
      }
    }
    // Least recently used first: a flood of new addresses cannot grow the map.
    for (const key of this.#entries.keys()) {
      if (this.#entries.size < MAX_KEYS) break;
      this.#entries.delete(key);
    }
  }
}

/** A refusal by a rate limit, with the reason for the mail log. */
export interface RateRefusal {
  reply: SmtpReply;
  reason: string;
}

/** A refusal's value, or a promise of it (the shared limiter asks a server). */
export type MaybePromise<T> = T | Promise<T>;

/**
 * Per-client rate limits: {@linkcode RateLimits} counts in this process,
 * the cluster's limiter across a fleet of nodes. The local one answers
 * synchronously, so intake's usual path awaits no round trip.
 */
export interface RateLimiter {
  /** Counts a connection, or returns the refusal. */
  admitConnection(ip: string, limits: RateLimitSettings): MaybePromise<RateRefusal | undefined>;
  /** Counts a message from `user` (authenticated) or else `ip`, or returns the refusal. */
  admitMessage(
    ip: string,
    user: string | undefined,
    limits: RateLimitSettings,
  ): MaybePromise<RateRefusal | undefined>;
}

/** The refusals of the rate limits, by what was counted. */
export const RATE_REFUSALS: Readonly<Record<"connection" | "message" | "user", RateRefusal>> = {
  // RFC 5321 section 3.8: 421 closes the connection; the client retries later.
  connection: {
    reason: "connection_rate",
    reply: reply(421, "4.7.0", "Too many connections from your address, try again later"),
  },
  // RFC 3463: 4.7.1 is "delivery not authorized" for now; the client may retry later.
  message: {
    reason: "message_rate",
    reply: reply(451, "4.7.1", "Too many messages from your address, try again later"),
  },
  user: {
    reason: "user_message_rate",
    reply: reply(451, "4.7.1", "Too many messages from your account, try again later"),
  },
};

/** The per-client rate limits of one server, counted in this process. */
export class RateLimits implements RateLimiter {
  #connections: SlidingWindowCounter;
  #messagesByIp: SlidingWindowCounter;
  #messagesByUser: SlidingWindowCounter;

  /** Creates empty counters; `clock` gives milliseconds. */
  constructor(clock: () => number = Date.now) {
    this.#connections = new SlidingWindowCounter(60_000, clock);
    this.#messagesByIp = new SlidingWindowCounter(3_600_000, clock);
    this.#messagesByUser = new SlidingWindowCounter(3_600_000, clock);
  }

  /** Counts a connection, or returns the 421 that refuses it. */
  admitConnection(ip: string, limits: RateLimitSettings): RateRefusal | undefined {
    if (this.#connections.hit(clientKey(ip), limits.connectionsPerIpPerMinute)) return undefined;
    return RATE_REFUSALS.connection;
  }

  /**
   * Counts a message (at MAIL FROM), or returns the 451 that defers it. An
   * authenticated user is counted as the user, anyone else by address.
   */
  admitMessage(
    ip: string,
    user: string | undefined,
    limits: RateLimitSettings,
  ): RateRefusal | undefined {
    if (user !== undefined) {
      if (this.#messagesByUser.hit(user.toLowerCase(), limits.messagesPerUserPerHour)) {
        return undefined;
      }
      return RATE_REFUSALS.user;
    }
    if (this.#messagesByIp.hit(clientKey(ip), limits.messagesPerIpPerHour)) return undefined;
    return RATE_REFUSALS.message;
  }
}
