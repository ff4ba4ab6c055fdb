/**
 * What one LMTP transaction (RFC 2033) gave each of its recipients: the
 * reply the server gave that recipient (its refusal at RCPT, or its reply
 * to the data), when it gave one, else what the failure of the transaction
 * means for a recipient left without a reply.
 *
 * @module
 */

import type { DeliveryResult } from "../queue/mod.ts";

/** A reply the server gave one recipient: a refusal at RCPT, or its reply to the data. */
export interface RecipientReply {
  /** The reply code; undefined when the reply had none that could be read. */
  code: number | undefined;
  /** The reply as the server wrote it, code included. */
  response: string;
}

/** How a transaction ended before every recipient had its reply. */
export interface TransactionFailure {
  /** The code of the reply that ended it (a 5xx to MAIL FROM); undefined for a lost connection. */
  code: number | undefined;
  /** What went wrong: the reply, or the error. */
  text: string;
  /** The message had started to go out (DATA was accepted). */
  afterData: boolean;
}

/** What one message's transaction gave each recipient. */
export type LmtpResults = Map<string, DeliveryResult>;

/**
 * The result of each of `to`: its own reply in `replies` (whatever
 * `failure` says), or else what `failure` means for it. `where` names the
 * server in the errors.
 *
 * @example A connection lost after the first recipient's reply to the data
 * ```ts
 * lmtpResults("unix:/run/lmtp", ["a@x.test", "b@x.test"], new Map([
 *   ["a@x.test", { code: 250, response: "250 2.0.0 saved" }],
 * ]), { code: undefined, text: "Connection closed unexpectedly", afterData: true });
 * // a@x.test: sent; b@x.test: deferred
 * ```
 */
export function lmtpResults(
  where: string,
  to: readonly string[],
  replies: ReadonlyMap<string, RecipientReply>,
  failure?: TransactionFailure,
): LmtpResults {
  const results: LmtpResults = new Map();
  for (const address of to) {
    const reply = replies.get(address);
    results.set(
      address,
      reply ? ofReply(where, address, reply) : withoutReply(where, failure),
    );
  }
  return results;
}

/**
 * RFC 2033 section 4.2: after the data the server answers each recipient
 * it accepted at RCPT on its own, and that answer is the recipient's: a
 * 2xx means the message is stored for it, final even if the connection
 * dies before the others' replies (a retry would store it twice). A
 * refusal at RCPT left its recipient out of the transaction, so nothing
 * that ends the transaction later (a refused DATA, a lost connection)
 * speaks for it. Either way a 5xx is permanent (a bounce), anything else
 * temporary (a retry): RFC 5321 section 4.2.1.
 */
function ofReply(where: string, address: string, reply: RecipientReply): DeliveryResult {
  if (reply.code !== undefined && reply.code >= 200 && reply.code < 300) {
    return { status: "sent", detail: `lmtp:${address}` };
  }
  const error = `lmtp ${where}: ${reply.response}`;
  return reply.code !== undefined && reply.code >= 500
    ? { status: "failed", error, ...dsnOf(reply.response) }
    : { status: "deferred", error };
}

/**
 * A recipient the transaction ended without a reply for (one refused at
 * RCPT has its own). A 5xx that ended it before the data (to MAIL FROM,
 * or to DATA) is permanent for every such recipient. Once the data went
 * out, whatever ended the transaction (a lost connection, a timeout, even
 * a 5xx fragment left on a closed connection) is no answer for the
 * recipients still waiting for theirs: the server may or may not have
 * stored the message for them, and the next attempt sends it again (the
 * duplicate RFC 5321 section 6.1 accepts, as Postfix's LMTP client
 * retries those recipients).
 */
function withoutReply(where: string, failure: TransactionFailure | undefined): DeliveryResult {
  if (failure === undefined) {
    // A transaction that ended well answers every recipient; should one be
    // missing, a retry is the safe guess.
    return { status: "deferred", error: `lmtp ${where}: no reply for this recipient` };
  }
  const error = `lmtp ${where}: ${failure.text}`;
  if (!failure.afterData && failure.code !== undefined && failure.code >= 500) {
    return { status: "failed", error, ...dsnOf(failure.text) };
  }
  return { status: "deferred", error };
}

/** The enhanced status code (RFC 3463) a reply carries, for the bounce. */
function dsnOf(response: string): { dsnStatus?: string } {
  const match = /(?:^|\s)([245]\.\d{1,3}\.\d{1,3})(?:\s|$)/.exec(response);
  return match ? { dsnStatus: match[1]! } : {};
}
