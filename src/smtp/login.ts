/**
 * AUTH for submission (RFC 4954): PLAIN and LOGIN, only over TLS (the
 * listener refuses them in the clear), checked against the scrypt hashes
 * in the domain's users file. Failed logins are counted per client address
 * (IPv6 by /64); past the limit, every attempt from there is refused for a
 * while without checking the password, so guessing gains nothing.
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

/** Checks logins, and counts the failures per client. */
export class LoginChecker {
  #failures: SlidingWindowCounter;

  /** Creates a checker; `clock` gives milliseconds. */
  constructor(clock: () => number = Date.now) {
    this.#failures = new SlidingWindowCounter(3_600_000, clock);
  }

  /**
   * Checks `attempt` against the users of the policy in force; at most
   * `maxFailuresPerHour` failures per client address (0: no limit).
   */
  async check(
    attempt: LoginAttempt,
    resolver: RecipientResolver,
    maxFailuresPerHour: number,
    dovecot?: DovecotAuth,
    onDovecotError?: (err: unknown) => void,
  ): Promise<LoginResult> {
    const key = clientKey(attempt.ip);
    if (maxFailuresPerHour > 0 && this.#failures.count(key) >= maxFailuresPerHour) {
      return { refusal: TOO_MANY, reason: "login_rate" };
    }
    if (dovecot?.checksPasswords) {
      const result = await loginWithDovecot(dovecot, attempt, resolver, onDovecotError);
      if ("refusal" in result && result.reason === "bad_credentials") {
        this.#failures.hit(key, Number.MAX_SAFE_INTEGER);
      }
      return result;
    }
    const hash = resolver.passwordOf(attempt.username);
    // A missing user costs the same time as a wrong password, so that the
    // answer's delay does not tell which users exist.
    dummyHash ??= hashPassword(crypto.randomUUID());
    const ok = await verifyPassword(attempt.password, hash ?? await dummyHash) &&
      hash !== undefined;
    if (ok) return { user: resolver.normalize(attempt.username) };
    this.#failures.hit(key, Number.MAX_SAFE_INTEGER);
    return { refusal: BAD_CREDENTIALS, reason: "bad_credentials" };
  }
}

/** A hash of a random password nobody knows, checked when the user does not exist. */
let dummyHash: Promise<string> | undefined;
