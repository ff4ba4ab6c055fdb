/**
 * The hard error limit of a session, like Postfix's smtpd_hard_error_limit:
 * after that many refused or bad commands the session ends with
 * `421 4.7.0`. A client that floods refused commands (a dictionary attack,
 * a spam run, a body pipelined as commands) then costs a bounded amount of
 * work and log, whatever it sends.
 *
 * @module
 */

import { reply, type SmtpReply } from "./reply.ts";

/**
 * 452 4.5.3 replies for recipients over the per-message limit that do not
 * count as errors (Postfix's smtpd_recipient_overshoot_limit, 1000): a
 * mailing list server that sends 150 recipients is told to send 50 again
 * later (RFC 5321 section 4.5.3.1.10), and must not be cut off for it.
 */
export const RECIPIENT_OVERSHOOT = 1000;

/** The reply that ends a session at the limit. */
export function errorLimitReply(hostname: string): SmtpReply {
  // RFC 5321 section 3.8: 421 closes the channel; 4.7.0 as Postfix answers.
  return reply(421, "4.7.0", `${hostname} Error: too many errors, closing connection`);
}

/** Counts the error replies of one session. */
export class ErrorCounter {
  #limit: number;
  #errors = 0;
  #overshoot = 0;

  /** `limit` errors end the session; 0 never does. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** How many error replies counted so far. */
  get errors(): number {
    return this.#errors;
  }

  /**
   * Counts a reply sent to the client (`text` with its enhanced code);
   * true when the session has now reached the limit.
   */
  count(code: number, text: string): boolean {
    // 421 ends the session anyway; below 400 is no error.
    if (code < 400 || code === 421) return false;
    if (code === 452 && text.startsWith("4.5.3") && this.#overshoot++ < RECIPIENT_OVERSHOOT) {
      return false;
    }
    this.#errors++;
    return this.#limit > 0 && this.#errors >= this.#limit;
  }
}
