/**
 * Checks the header section of a message as it streams in, before anything
 * reads it: its size, its line ends, and its hops. A message that fails is
 * refused after DATA, and nothing of it is stored.
 *
 * **Size.** mailauth parses the whole header section in one synchronous call
 * whose time grows with the square of its number of lines (its
 * `parseHeaders` joins continuation lines one at a time), both to verify
 * mail from outside and to DKIM-sign submitted mail; the event loop, every
 * other session with it, waits. 80,000 short folded lines took 11.6 s, a
 * million never finished. So a header section may have at most
 * {@linkcode MAX_HEADER_LINES} physical lines and
 * {@linkcode MAX_HEADER_BYTES} bytes: real mail stays far below both (Gmail
 * refuses over 500 KB or 5,000 fields; sendmail's default is 32 KB in
 * all), and at the limits mailauth's worst case is tens of milliseconds,
 * in pieces of about 10 ms on the event loop (README, "Hostile clients").
 *
 * **Bare CR.** A CR not followed by LF is no line end to Postern's header
 * filter nor to mailauth (which split lines at LF), but nodemailer turns it
 * into CRLF when it hands the message on (LMTP, outbound), and some readers
 * of a Maildir take it for one. A field hidden behind it (`X-Note:
 * hi<CR>From: …`) escaped the DMARC check and the RFC 8601 filter, and
 * arrived downstream as a field of its own. RFC 5321 section 2.3.8 allows CR
 * only in CRLF, so a header section with a bare CR is refused (as Postfix's
 * `smtpd_forbid_bare_newline = reject` refuses a bare LF). A bare LF is
 * accepted: every reader on the way takes it for a line end (the filter and
 * mailauth split at LF, nodemailer adds its CR, Maildir delivery keeps it as
 * the line end it is there), so they all see the same fields; Postfix's
 * `smtpd_forbid_bare_newline = normalize` accepts it too.
 *
 * **Hops.** RFC 5321 section 6.3: a server MUST detect and stop trivial
 * loops, and counting the `Received:` fields is the simple way, with a
 * threshold that SHOULD "normally [be] at least 100". Without it a
 * message forwarded between two servers went round until the disk filled
 * (the audit saw 4,125 hops in 25 s). A message that arrives with more
 * than {@linkcode MAX_RECEIVED_FIELDS} of them (our own, added above what
 * the client sent, aside) gets 554 5.4.6, as chasquid answers (RFC 3463
 * X.4.6, "routing loop detected"). 100, not Postfix's `hopcount_limit` of
 * 50 or chasquid's 50: the RFC's number, a loop still ends after 100 hops,
 * and mail that went through several organisations' relay chains and
 * list servers keeps its room. Only a field start counts: the name at the
 * head of a line that is not a fold (RFC 5322 section 2.2), in any case,
 * with optional white space before the colon (`obs-received`, section
 * 4.5.6); `Received` in a folded line or in the body does not.
 *
 * **Delivered-To.** The guard also notes whether the section has a
 * `Delivered-To:` field (same rules: a field start, in any case, white
 * space allowed before the colon), so that local delivery, which refuses a
 * message already delivered to the mailbox it is about to fill (mail loops,
 * src/delivery/delivered_to.ts), need not read the header from the spool
 * again for the great majority of messages that have none.
 *
 * **The body** is not checked. Once the header section has ended (at the
 * first empty line, which every reader finds in the same place when the
 * section has no bare CR) nothing in the body can make a header field, and
 * a bare CR there cannot end DATA downstream: smtp-server ends DATA only at
 * CRLF.CRLF, and nodemailer stuffs a dot that follows a bare CR as it turns
 * the CR into CRLF. Refusing it would refuse mail that Postfix and most MTAs
 * carry (old Mac line ends in 8bit text parts). What it costs: a DKIM
 * signature over such a body no longer verifies once nodemailer has
 * rewritten it.
 *
 * @module
 */

import { Replies, type SmtpReply } from "./reply.ts";

/** Most physical lines a header section may have (the empty line that ends it aside). */
export const MAX_HEADER_LINES = 3_000;

/** Most bytes a header section may have (the empty line that ends it aside). */
export const MAX_HEADER_BYTES = 256 * 1024;

/** Most `Received:` fields a message may arrive with (RFC 5321 section 6.3: at least 100). */
export const MAX_RECEIVED_FIELDS = 100;

/** Why a header section is refused. */
export type HeaderViolation =
  | { kind: "lines"; limit: number }
  | { kind: "bytes"; limit: number }
  | { kind: "bare_cr" }
  | { kind: "hops"; limit: number };

/** The limits a guard applies. */
export interface HeaderLimits {
  lines: number;
  bytes: number;
  /** Most `Received:` fields (by default {@linkcode MAX_RECEIVED_FIELDS}). */
  received?: number;
}

/** The limits of a guard made without any: the ones above. */
export const HEADER_LIMITS: Readonly<Required<HeaderLimits>> = {
  lines: MAX_HEADER_LINES,
  bytes: MAX_HEADER_BYTES,
  received: MAX_RECEIVED_FIELDS,
};

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
/** The field name to count, lower case (ASCII: a byte ORed with 0x20 is lower case only if a letter). */
const RECEIVED = new TextEncoder().encode("received");
/** The field name to note, lower case (`-` ORed with 0x20 stays `-`). */
const DELIVERED_TO = new TextEncoder().encode("delivered-to");

/**
 * Scans the header section of one message, chunk by chunk, and reports the
 * first violation. It stops looking at the empty line that ends the section;
 * the body costs nothing.
 */
export class HeaderGuard {
  #limits: Required<HeaderLimits>;
  #inHeader = true;
  /** The line so far is empty, or holds only a CR. */
  #lineEmpty = true;
  /** The last byte seen was a CR. */
  #afterCr = false;
  #lines = 0;
  #bytes = 0;
  /**
   * How much of a field name of interest the current line has begun with:
   * 0 to its length for the name, matched so far, and then the white space
   * before the colon; -1 when the line cannot start such a field.
   */
  #name = 0;
  /** The name being matched: `RECEIVED` or `DELIVERED_TO`, chosen by the line's first byte. */
  #field: Uint8Array = RECEIVED;
  #received = 0;
  #deliveredTo = false;

  /** Creates a guard with `limits` (by default {@linkcode HEADER_LIMITS}). */
  constructor(limits: HeaderLimits = HEADER_LIMITS) {
    this.#limits = { received: MAX_RECEIVED_FIELDS, ...limits };
  }

  /**
   * The header section has a `Delivered-To:` field. Meaningful once the
   * section has ended without a violation (the message was taken whole).
   */
  get deliveredTo(): boolean {
    return this.#deliveredTo;
  }

  /** Scans the next chunk of the message; returns a violation once there is one. */
  push(chunk: Uint8Array): HeaderViolation | undefined {
    if (!this.#inHeader) return undefined;
    const { lines: maxLines, bytes: maxBytes, received: maxReceived } = this.#limits;
    // Locals in the loop, fields between chunks.
    let lineEmpty = this.#lineEmpty;
    let afterCr = this.#afterCr;
    let name = this.#name;
    let field = this.#field;
    let i = 0;
    for (; i < chunk.byteLength; i++) {
      const b = chunk[i]!;
      // RFC 5321 section 2.3.8: CR only in CRLF.
      if (afterCr && b !== LF) return { kind: "bare_cr" };
      if (b === LF) {
        if (lineEmpty) {
          // RFC 5322 section 2.1: the empty line ends the header section.
          this.#inHeader = false;
          return undefined;
        }
        if (++this.#lines > maxLines) return { kind: "lines", limit: maxLines };
        if (this.#bytes + i + 1 > maxBytes) return { kind: "bytes", limit: maxBytes };
        lineEmpty = true;
        afterCr = false;
        name = 0;
        continue;
      }
      if (b === CR) afterCr = true;
      else lineEmpty = false;
      if (name < 0) continue;
      if (name === 0) {
        // A fold starts with white space, so it never matches.
        const lower = b | 0x20;
        field = lower === DELIVERED_TO[0] ? DELIVERED_TO : RECEIVED;
        name = lower === field[0] ? 1 : -1;
      } else if (name < field.byteLength) {
        name = (b | 0x20) === field[name] ? name + 1 : -1;
      } else if (b === COLON) {
        name = -1;
        if (field === DELIVERED_TO) this.#deliveredTo = true;
        else if (++this.#received > maxReceived) return { kind: "hops", limit: maxReceived };
      } else if (b !== SP && b !== HT) {
        name = -1;
      }
    }
    this.#lineEmpty = lineEmpty;
    this.#afterCr = afterCr;
    this.#name = name;
    this.#field = field;
    this.#bytes += i;
    // A CR that ends the chunk at the start of a line belongs to the empty
    // line, if an LF follows it (and is a bare CR, if not).
    const pending = lineEmpty && afterCr ? 1 : 0;
    if (this.#bytes - pending > maxBytes) return { kind: "bytes", limit: maxBytes };
    return undefined;
  }

  /** The message ended; returns a violation its last bytes make. */
  end(): HeaderViolation | undefined {
    if (!this.#inHeader) return undefined;
    this.#inHeader = false;
    if (this.#afterCr) return { kind: "bare_cr" };
    // A message that is all header, its last line unterminated.
    if (!this.#lineEmpty && this.#lines + 1 > this.#limits.lines) {
      return { kind: "lines", limit: this.#limits.lines };
    }
    return undefined;
  }
}

/**
 * Whether header lines (a post-data hook's, CRLF-ended) hold a
 * `Delivered-To:` field, by the rules {@linkcode HeaderGuard} applies.
 */
export function hasDeliveredTo(lines: Uint8Array): boolean {
  const guard = new HeaderGuard({ lines: Infinity, bytes: Infinity, received: Infinity });
  guard.push(lines);
  guard.end();
  return guard.deliveredTo;
}

/** The reply to a message whose header section has `violation`, and the reason logged. */
export function headerRefusal(violation: HeaderViolation): { reason: string; reply: SmtpReply } {
  switch (violation.kind) {
    case "lines":
      return { reason: "header_too_big", reply: Replies.headerTooBig(`${violation.limit} lines`) };
    case "bytes":
      return { reason: "header_too_big", reply: Replies.headerTooBig(`${violation.limit} bytes`) };
    case "bare_cr":
      return { reason: "bare_cr", reply: Replies.bareCr };
    case "hops":
      return { reason: "too_many_hops", reply: Replies.tooManyHops(violation.limit) };
  }
}
