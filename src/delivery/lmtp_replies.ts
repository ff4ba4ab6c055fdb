/**
 * The replies to the data of an LMTP transaction, recipient by recipient,
 * as nodemailer's SMTPConnection reads them.
 *
 * RFC 2033 section 4.2: after the data, the server replies once for each
 * recipient, in the order of the RCPT commands, and a 2xx means the message
 * is stored for that recipient the moment it is sent. nodemailer hands the
 * replies over only once the last one is in; a connection lost before then
 * reports its loss and nothing else, so the recipients already answered
 * would look unanswered, and get the message again on the next attempt.
 *
 * nodemailer has no public hook for these replies, so the tap wraps the
 * connection's `_actionLMTPStream`, which it calls with each recipient and
 * that recipient's reply (the way `src/outbound/wire.ts` wraps two other
 * methods). `attach` checks that it exists, so an upgrade that renames it
 * fails at the first connection, and the LMTP tests with it.
 *
 * @module
 */

import type { RecipientReply } from "./lmtp_results.ts";

/** The method of nodemailer's SMTPConnection the tap wraps. */
interface Tappable {
  _actionLMTPStream(recipient: string, final: boolean, str: string, callback: unknown): unknown;
}

/** Collects the replies to the data of one connection's current transaction. */
export class DataReplies {
  #replies = new Map<string, RecipientReply>();

  private constructor() {}

  /** Wraps `connection`'s handler of the replies to the data. */
  static attach(connection: object): DataReplies {
    const target = connection as Partial<Tappable>;
    const original = target._actionLMTPStream;
    if (typeof original !== "function") {
      throw new TypeError(
        "Cannot read the LMTP replies to the data: nodemailer's SMTPConnection has no _actionLMTPStream",
      );
    }
    const tap = new DataReplies();
    target._actionLMTPStream = (recipient, final, str, callback) => {
      // Noted first: on the last reply nodemailer ends the transaction at once.
      tap.#replies.set(recipient, { code: codeOf(str), response: str });
      return original.call(connection, recipient, final, str, callback);
    };
    return tap;
  }

  /** Starts a new transaction: forgets the replies of the one before. */
  clear(): void {
    this.#replies.clear();
  }

  /** The replies read so far in the current transaction, by recipient. */
  get replies(): ReadonlyMap<string, RecipientReply> {
    return this.#replies;
  }
}

/** The code of a reply: its first three digits (RFC 5321 section 4.2). */
function codeOf(reply: string): number | undefined {
  const digits = /^\d{3}/.exec(reply)?.[0];
  return digits === undefined ? undefined : Number(digits);
}
