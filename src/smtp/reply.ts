/**
 * SMTP replies as values: a reply code, an enhanced status code (RFC 3463)
 * and text. Policy code returns these; only the adapter turns them into
 * what smtp-server expects.
 *
 * @module
 */

/** One SMTP reply. */
export interface SmtpReply {
  /** Three-digit reply code (RFC 5321 section 4.2). */
  code: number;
  /** Enhanced status code such as `5.1.1` (RFC 3463). */
  enhanced: string;
  /** Human-readable text, one line. */
  text: string;
}

/** Builds a reply value. */
export function reply(code: number, enhanced: string, text: string): SmtpReply {
  return { code, enhanced, text };
}

/** True for 5xx replies, which the client must not retry. */
export function isPermanent(r: SmtpReply): boolean {
  return r.code >= 500;
}

/** The reply as it appears on the wire, without CRLF. */
export function formatReply(r: SmtpReply): string {
  // smtp-server's own replies carry no enhanced code (RFC 2034 makes it optional).
  return r.enhanced ? `${r.code} ${r.enhanced} ${r.text}` : `${r.code} ${r.text}`;
}

/** The text part of a reply with its enhanced code in front. */
export function replyText(r: SmtpReply): string {
  return `${r.enhanced} ${r.text}`;
}

/** Matches text that already starts with an enhanced status code. */
export const ENHANCED_CODE_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;

/** Replies used in more than one place. */
export const Replies = {
  tooManyConnections: reply(421, "4.7.0", "Too many connections, try again later"),
  tooManyConnectionsFromIp: reply(
    421,
    "4.7.0",
    "Too many connections from your address, try again later",
  ),
  localError: reply(451, "4.3.0", "Local error in processing, try again later"),
  messageTooBig: (limit: number) =>
    reply(552, "5.3.4", `Message exceeds the size limit of ${limit} bytes`),
  /**
   * RFC 5321 section 4.5.3.1.10 (and RFC 3463 X.3.4, "message too big for
   * system"): the header section alone is over a limit of ours.
   */
  headerTooBig: (limit: string) =>
    reply(552, "5.3.4", `Message header section exceeds the limit of ${limit}`),
  /**
   * RFC 5321 section 2.3.8: CR only as part of CRLF. RFC 3463 X.6.0, "other
   * or undefined media error"; the words are Postfix's for a bare LF.
   */
  bareCr: reply(550, "5.6.0", "Error: bare <CR> received in the message header"),
  /**
   * RFC 5321 section 6.3: a loop is stopped by counting Received fields.
   * RFC 3463 X.4.6, "routing loop detected"; 554 as Postfix and chasquid
   * answer, "too many hops" in Postfix's words.
   */
  tooManyHops: (limit: number) =>
    reply(554, "5.4.6", `Too many hops: over ${limit} Received header fields, a mail loop`),
  tooManyRecipients: reply(452, "4.5.3", "Too many recipients"),
  relayDenied: reply(550, "5.7.1", "Relaying denied"),
  noSuchUser: reply(550, "5.1.1", "No such user here"),
} as const;
