/**
 * AUTH for submission (RFC 4954): PLAIN and LOGIN, only over TLS (the
 * listener refuses them in the clear), checked against the scrypt hashes
 * in the domain's users file. Failed logins are counted per client address
 * (IPv6 by /64), and an attempt being checked counts as a failure until it
 * succeeds; past the limit, every attempt from there is refused for a while
 * without checking the password, so guessing gains nothing, however many
 * connections guess at once.
 *
 * @module
 */

import type { RecipientResolver } from "../aliases/mod.ts";
import { hashPassword, verifyPassword } from "../users/mod.ts";
import type { DovecotAuth } from "../users/dovecot_auth.ts";
import { loginWithDovecot } from "./dovecot_login.ts";
import { clientKey, SlidingWindowCounter } from "./rate_limits.ts";
import { reply, type SmtpReply } from "./reply.ts";

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

/**
 * Failed logins per client key within the last hour: counted in this
 * process, or across a fleet by the cluster's counter.
 */
export interface FailureCounter {
  /** Failures of `key` within the window. */
  count(key: string): number | Promise<number>;
  /** Counts one failure of `key`. */
  add(key: string): void | Promise<void>;
}

/** Failed logins counted in this process. */
export class LocalFailures implements FailureCounter {
  #failures: SlidingWindowCounter;

  /** Counts within the hour; `clock` gives milliseconds. */
  constructor(clock: () => number = Date.now) {
    this.#failures = new SlidingWindowCounter(3_600_000, clock);
  }

  /** Failures of `key` within the hour. */
  count(key: string): number {
    return this.#failures.count(key);
  }

  /** Counts one failure of `key`. */
  add(key: string): void {
    this.#failures.hit(key, Number.MAX_SAFE_INTEGER);
  }
}

/** Checks logins, and counts the failures per client. */
export class LoginChecker {
  #failures: FailureCounter;
  /**
   * Attempts being checked now, per client key. Each counts as a failure
   * until its outcome is known: the password check takes ~100 ms (scrypt),
   * and attempts that all read the count before any of them added a
   * failure would all get their guess checked, however many there were.
   */
  #inFlight = new Map<string, number>();

  /** Creates a checker; `clock` gives milliseconds; `failures` counts elsewhere (a fleet). */
  constructor(clock: () => number = Date.now, failures?: FailureCounter) {
    this.#failures = failures ?? new LocalFailures(clock);
  }

  /**
   * Checks `attempt` against the users of the policy in force; at most
   * `maxFailuresPerHour` failures per client address (0: no limit), counting
   * the attempts still being checked as failures.
   */
  async check(
    attempt: LoginAttempt,
    resolver: RecipientResolver,
    maxFailuresPerHour: number,
    dovecot?: DovecotAuth,
    onDovecotError?: (err: unknown) => void,
  ): Promise<LoginResult> {
    const key = clientKey(attempt.ip);
    if (maxFailuresPerHour > 0) {
      const failures = await this.#failures.count(key);
      // Nothing is awaited between reading the count and reserving a place,
      // so attempts that run at the same time cannot all pass the limit.
      if (failures + (this.#inFlight.get(key) ?? 0) >= maxFailuresPerHour) {
        return { refusal: TOO_MANY, reason: "login_rate" };
      }
    }
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
    try {
      const result = await this.#verify(attempt, resolver, dovecot, onDovecotError);
      // The failure is counted before its reservation is given back.
      if ("refusal" in result && result.reason === "bad_credentials") {
        await this.#failures.add(key);
      }
      return result;
    } finally {
      const left = (this.#inFlight.get(key) ?? 1) - 1;
      if (left > 0) this.#inFlight.set(key, left);
      else this.#inFlight.delete(key);
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
