/**
 * AUTH for submission (RFC 4954): PLAIN and LOGIN, only over TLS (the
 * listener refuses them in the clear), checked against the scrypt hashes
 * in the domain's users file. Failed logins are counted per client address
 * (IPv6 by /64), and an attempt being checked counts as a failure until it
 * succeeds; past the limit, every attempt from there is refused for a while
 * without checking the password, so guessing gains nothing, however many
 * connections guess at once, and on however many nodes of a fleet.
 *
 * @module
 */

import type { RecipientResolver } from "../aliases/mod.ts";
import { hashPassword, verifyPassword } from "../users/mod.ts";
import type { DovecotAuth } from "../users/dovecot_auth.ts";
import { loginWithDovecot } from "./dovecot_login.ts";
import { clientKey } from "./rate_limits.ts";
import { reply, type SmtpReply } from "./reply.ts";
import { SlidingLog } from "./sliding_log.ts";

/** What a client sent with AUTH. */
export interface LoginAttempt {
  method: string;
  username: string;
  password: string;
  ip: string;
}

/** Outcome of a login: the user's address, or the reply that refuses it. */
export type LoginResult = { user: string } | { refusal: SmtpReply; reason: string };

/** RFC 4954 section 6: 535 5.7.8 for bad credentials. */
const BAD_CREDENTIALS = reply(535, "5.7.8", "Authentication credentials invalid");
/** RFC 4954 section 6: 454 4.7.0, a temporary failure. */
const TOO_MANY = reply(454, "4.7.0", "Too many failed logins from your address, try again later");

/** The place one attempt holds while its password is checked. */
export interface LoginTicket {
  /**
   * Gives the place back once the outcome is known; with `failed`, the
   * attempt is counted as a failure first, so that it never goes from
   * being checked to not counted at all.
   */
  settle(failed: boolean): void | Promise<void>;
}

/**
 * Failed logins per client key within the last hour, and the attempts
 * being checked: in this process, or across a fleet by the cluster's
 * counter.
 */
export interface FailureCounter {
  /**
   * A place for one attempt of `key`, or undefined when the failures of
   * `key` within the hour plus the attempts of `key` being checked reach
   * `limit` (0: no limit, never refused; failures are still counted).
   * Deciding and taking the place are one step, so that attempts made at
   * the same time cannot all pass the limit.
   */
  reserve(key: string, limit: number): LoginTicket | undefined | Promise<LoginTicket | undefined>;
}

const HOUR = 3_600_000;

/**
 * Failures kept per client when there is no limit (0): a limit set later
 * (the policy reloads live) up to this many applies at once.
 */
export const KEEP_WITHOUT_LIMIT = 100;

/**
 * Failed logins and attempts being checked, counted in this process. The
 * failures are counted exactly (`sliding_log.ts`): never more than the
 * limit of password checks fail within any window-long span, not even
 * across the edge of a clock hour.
 */
export class LocalFailures implements FailureCounter {
  #failures: SlidingLog;
  /**
   * Attempts being checked now, per client key. Each counts as a failure
   * until its outcome is known: the password check takes ~100 ms (scrypt),
   * and attempts that all read the count before any of them added a
   * failure would all get their guess checked, however many there were.
   */
  #inFlight = new Map<string, number>();

  /** Counts within the hour (or `windowMs`); `clock` gives milliseconds. */
  constructor(clock: () => number = Date.now, windowMs: number = HOUR) {
    this.#failures = new SlidingLog(windowMs, clock);
  }

  /** Failures of `key` within the window (attempts being checked aside). */
  failures(key: string): number {
    return this.#failures.count(key);
  }

  /** Keys with failures remembered (bounded under a flood of clients). */
  get size(): number {
    return this.#failures.size;
  }

  /**
   * A place for an attempt of `key`, unless failures and attempts being
   * checked reach `limit`. A failure keeps the newest `keep` failures of
   * `key` (default: the limit, or {@linkcode KEEP_WITHOUT_LIMIT} without
   * one); a fleet's node keeps its share with the fleet's limit.
   */
  reserve(
    key: string,
    limit: number,
    keep: number = limit > 0 ? limit : KEEP_WITHOUT_LIMIT,
  ): LoginTicket | undefined {
    const inFlight = this.#inFlight.get(key) ?? 0;
    // Synchronous: nothing runs between reading the counts and taking the place.
    if (limit > 0 && this.#failures.count(key) + inFlight >= limit) return undefined;
    this.#inFlight.set(key, inFlight + 1);
    let settled = false;
    return {
      settle: (failed) => {
        if (settled) return;
        settled = true;
        if (failed) this.#failures.add(key, keep);
        const left = (this.#inFlight.get(key) ?? 1) - 1;
        if (left > 0) this.#inFlight.set(key, left);
        else this.#inFlight.delete(key);
      },
    };
  }
}

/** Checks logins, and counts the failures per client. */
export class LoginChecker {
  #failures: FailureCounter;

  /** Creates a checker; `clock` gives milliseconds; `failures` counts elsewhere (a fleet). */
  constructor(clock: () => number = Date.now, failures?: FailureCounter) {
    this.#failures = failures ?? new LocalFailures(clock);
  }

  /**
   * Checks `attempt` against the users of the policy in force; at most
   * `maxFailuresPerHour` failures per client address (0: no limit), counting
   * the attempts still being checked (on any node of a fleet) as failures.
   */
  async check(
    attempt: LoginAttempt,
    resolver: RecipientResolver,
    maxFailuresPerHour: number,
    dovecot?: DovecotAuth,
    onDovecotError?: (err: unknown) => void,
  ): Promise<LoginResult> {
    const key = clientKey(attempt.ip);
    const reserved = this.#failures.reserve(key, maxFailuresPerHour);
    // Only a fleet's counter answers later; a node on its own is not slowed by a needless await.
    const ticket = reserved instanceof Promise ? await reserved : reserved;
    if (ticket === undefined) return { refusal: TOO_MANY, reason: "login_rate" };
    let failed = false;
    try {
      const result = await this.#verify(attempt, resolver, dovecot, onDovecotError);
      failed = "refusal" in result && result.reason === "bad_credentials";
      return result;
    } finally {
      const settled = ticket.settle(failed);
      if (settled instanceof Promise) await settled;
    }
  }

  /** The password check itself, by Dovecot or against the users files. */
  async #verify(
    attempt: LoginAttempt,
    resolver: RecipientResolver,
    dovecot?: DovecotAuth,
    onDovecotError?: (err: unknown) => void,
  ): Promise<LoginResult> {
    if (dovecot?.checksPasswords) {
      return await loginWithDovecot(dovecot, attempt, resolver, onDovecotError);
    }
    const hash = resolver.passwordOf(attempt.username);
    // A missing user costs the same time as a wrong password, so that the
    // answer's delay does not tell which users exist.
    dummyHash ??= hashPassword(crypto.randomUUID());
    const ok = await verifyPassword(attempt.password, hash ?? await dummyHash) &&
      hash !== undefined;
    if (ok) return { user: resolver.normalize(attempt.username) };
    return { refusal: BAD_CREDENTIALS, reason: "bad_credentials" };
  }
}

/** A hash of a random password nobody knows, checked when the user does not exist. */
let dummyHash: Promise<string> | undefined;
