/**
 * Each recipient's own reply in an LMTP transaction, as nodemailer's
 * SMTPConnection reads them: its refusal at RCPT, or its reply to the data.
 *
 * RFC 2033 section 4.2: after the data, the server replies once for each
 * recipient it accepted at RCPT, in the order of the RCPT commands, and a
 * 2xx means the message is stored for that recipient the moment it is
 * sent. nodemailer hands the replies over only once the last one is in; a
 * connection lost before then reports its loss and nothing else, so the
 * recipients already answered would look unanswered, and get the message
 * again on the next attempt. The refusals at RCPT it reports only when the
 * transaction ends well or every recipient was refused, so they would be
 * lost the same way, and with them a permanent or temporary answer.
 *
 * nodemailer has no public hook for these replies. The tap wraps the
 * connection's `_actionLMTPStream`, which it calls with each recipient and
 * that recipient's reply to the data (the way `src/outbound/wire.ts` wraps
 * two other methods), and reads the refusals at RCPT from the envelope
 * nodemailer keeps for the transaction in progress (`_envelope`, its
 * `rejectedErrors`). `attach` checks that both exist, so an upgrade that
 * renames either fails at the first connection, and the LMTP tests with it.
 *
 * @module
 */

import type { RecipientReply } from "./lmtp_results.ts";

/** A refusal nodemailer noted in the envelope (its SMTPError, in part). */
interface NotedRefusal {
  /** The command it answered: "RCPT TO", or "DATA" for a reply to the data. */
  command?: unknown;
  recipient?: unknown;
  response?: unknown;
}

/** What nodemailer keeps of the transaction in progress. */
interface NotedEnvelope {
  /** The refusal of MAIL FROM, when the server refused it. */
  mailError?: unknown;
  rejectedErrors?: unknown;
}

/** The parts of nodemailer's SMTPConnection the tap reads and wraps. */
interface Tappable {
  _actionLMTPStream(recipient: string, final: boolean, str: string, callback: unknown): unknown;
  /** The current transaction's envelope; `false` before the first and after RSET. */
  _envelope: NotedEnvelope | false;
}

/** Collects each recipient's own reply in one connection's current transaction. */
export class RecipientReplies {
  #connection: Tappable;
  #data = new Map<string, RecipientReply>();
  /** The envelope before `begin()`: one left over from an earlier transaction. */
  #before: unknown = undefined;

  private constructor(connection: Tappable) {
    this.#connection = connection;
  }

  /** Wraps `connection`'s handler of the replies to the data, and reads its envelope. */
  static attach(connection: object): RecipientReplies {
    const target = connection as Partial<Tappable>;
    const original = target._actionLMTPStream;
    if (typeof original !== "function") {
      throw new TypeError(
        "Cannot read the LMTP replies to the data: nodemailer's SMTPConnection has no _actionLMTPStream",
      );
    }
    if (!("_envelope" in target)) {
      throw new TypeError(
        "Cannot read the LMTP refusals at RCPT: nodemailer's SMTPConnection has no _envelope",
      );
    }
    const tap = new RecipientReplies(target as Tappable);
    target._actionLMTPStream = (recipient, final, str, callback) => {
      // Noted first: on the last reply nodemailer ends the transaction at once.
      tap.#data.set(recipient, { code: codeOf(str), response: str });
      return original.call(connection, recipient, final, str, callback);
    };
    return tap;
  }

  /** Starts a new transaction: forgets the replies of the one before. */
  begin(): void {
    this.#data.clear();
    // nodemailer keeps the last envelope until it starts the next
    // transaction, which a send that fails at once never does.
    this.#before = this.#connection._envelope;
  }

  /**
   * The replies read so far in the current transaction, by recipient: the
   * refusals at RCPT, and the replies to the data (which only the
   * recipients accepted at RCPT get, so none has both).
   */
  get replies(): ReadonlyMap<string, RecipientReply> {
    return new Map([...this.#refusedAtRcpt(), ...this.#data]);
  }

  #refusedAtRcpt(): Map<string, RecipientReply> {
    const refused = new Map<string, RecipientReply>();
    const envelope = this.#connection._envelope;
    if (!envelope || envelope === this.#before) return refused;
    // With PIPELINING the RCPT commands go out with MAIL FROM. Once it is
    // refused there is no transaction, and their replies (the 503 of RFC
    // 5321 section 3.3) say so rather than anything about a recipient: the
    // refusal of MAIL FROM decides for every recipient.
    if (envelope.mailError) return refused;
    const noted = Array.isArray(envelope.rejectedErrors) ? envelope.rejectedErrors : [];
    for (const e of noted as NotedRefusal[]) {
      if (e?.command !== "RCPT TO" || typeof e.recipient !== "string") continue;
      const response = typeof e.response === "string" ? e.response : "";
      refused.set(e.recipient, { code: codeOf(response), response });
    }
    return refused;
  }
}

/** The code of a reply: its first three digits (RFC 5321 section 4.2). */
function codeOf(reply: string): number | undefined {
  const digits = /^\d{3}/.exec(reply)?.[0];
  return digits === undefined ? undefined : Number(digits);
}
