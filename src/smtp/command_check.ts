/**
 * Checks of a command line's raw bytes, before smtp-server decodes them.
 * smtp-server decodes commands with `Buffer.toString()`, which turns
 * invalid UTF-8 into U+FFFD: distinct invalid addresses would become one
 * mailbox, and a sender's bytes would be lost. Here nothing is decoded
 * that is not valid UTF-8, and UTF-8 is taken only where SMTPUTF8 allows it.
 *
 * @module
 */

import { reply, type SmtpReply } from "./reply.ts";

/** What the check needs to know about the session. */
export interface CommandContext {
  /** A MAIL FROM was accepted and the transaction is open. */
  transactionOpen: boolean;
  /** That MAIL FROM carried the SMTPUTF8 parameter. */
  smtputf8: boolean;
}

/** A refusal: the reply and whether it carries an enhanced status code. */
export interface CommandRefusal {
  reply: SmtpReply;
  /** False for replies to EHLO and HELO, which carry none (RFC 2034 section 3). */
  enhanced: boolean;
  /** For the log: what was wrong. */
  reason: "bad_utf8" | "bad_base64" | "non_ascii_helo" | "non_ascii_address" | "routing_denied";
  /** The recipient refused, for the log. */
  to?: string;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The refusal of a command line (without its CRLF), or undefined when
 * smtp-server may handle it.
 */
export function checkCommand(
  line: Uint8Array,
  context: CommandContext,
): CommandRefusal | undefined {
  if (isAscii(line)) {
    return context.transactionOpen
      ? checkRouting(new TextDecoder("latin1").decode(line))
      : undefined;
  }
  let text: string;
  try {
    text = strictUtf8.decode(line);
  } catch {
    // RFC 6531 section 3.3: UTF-8 in SMTP is UTF-8 as RFC 3629 defines
    // it; anything else is a syntax error (500, as Postfix answers).
    return {
      reply: reply(500, "5.5.2", "Error: bad UTF-8 syntax"),
      enhanced: true,
      reason: "bad_utf8",
    };
  }
  const verb = /^\s*(\S+)/.exec(text)?.[1]?.toUpperCase() ?? "";
  if (verb === "EHLO" || verb === "HELO") {
    // RFC 5321 section 4.1.2: the EHLO Domain is ASCII (Let-dig, Ldh-str),
    // and it comes before any SMTPUTF8 is negotiated; the name also goes
    // into our Received header, which must stay ASCII in a message that is
    // not SMTPUTF8 (RFC 6532). An internationalized name goes as A-labels.
    return {
      reply: reply(501, "", "Error: Bad hostname syntax; send an IDN as A-labels (xn--)"),
      enhanced: false,
      reason: "non_ascii_helo",
    };
  }
  if (verb !== "MAIL" && verb !== "RCPT") return undefined;
  const path = /<([^<>]*)>(.*)$/s.exec(text);
  const routing = () => verb === "RCPT" && context.transactionOpen ? checkRouting(text) : undefined;
  if (!path || isAscii(new TextEncoder().encode(path[1]!))) return routing();
  const declared = verb === "MAIL"
    ? path[2]!.trim().split(/\s+/).some((p) => p.toUpperCase() === "SMTPUTF8")
    : context.smtputf8;
  // RCPT before MAIL gets smtp-server's 503.
  if (verb === "RCPT" && !context.transactionOpen) return undefined;
  if (declared) return routing();
  // RFC 6531 section 3.4: a non-ASCII address needs the SMTPUTF8
  // parameter on MAIL FROM; X.6.7 is the code RFC 6531 registers for a
  // non-ASCII address that is not permitted (553 as Postfix answers).
  return {
    reply: reply(553, "5.6.7", "Non-ASCII address without the SMTPUTF8 parameter on MAIL FROM"),
    enhanced: true,
    reason: "non_ascii_address",
  };
}

/**
 * RFC 5321 section 3.6.1 leaves it to a server whether it relays on
 * routing in the local part; Postern does not (README, Recipients and
 * aliases), and recipient.ts refuses `user%host@local` and `host!user@local`
 * with 550 5.7.1. A quoted local part that holds an `@`
 * (`"user@host"@local`) is valid RFC 5321 syntax too, but smtp-server's
 * parser takes the address for bad syntax (501 5.1.3) before any handler
 * sees it; this gives it the same 550 5.7.1, whatever its domain.
 */
const ROUTING_DENIED = reply(
  550,
  "5.7.1",
  "Relaying denied: sender-specified routing is not allowed",
);

/** The refusal of a RCPT TO whose quoted local part holds an `@`. */
function checkRouting(text: string): CommandRefusal | undefined {
  // A cheap test first: this runs for every command of an open transaction.
  if (!text.includes('"')) return undefined;
  const path = /^RCPT\s+TO:\s*<(?:@[^<>:]*:)?("(?:[^"\\]|\\.)*")@([^<>@"]*)>/i.exec(text);
  if (!path || !path[1]!.includes("@")) return undefined;
  return {
    reply: ROUTING_DENIED,
    enhanced: true,
    reason: "routing_denied",
    to: `${path[1]}@${path[2]}`,
  };
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

/** The base64 alphabet with padding (RFC 4648 section 4). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The refusal of AUTH credentials that are not base64 of UTF-8: the initial
 * response of `AUTH PLAIN|LOGIN <token>`, or, with `continuation`, a line
 * answering a 334 challenge. smtp-server decodes base64 leniently (skipping
 * what is not base64) and the result with U+FFFD in place of each bad byte,
 * so a password holding U+FFFD would let in any invalid bytes; RFC 4616
 * section 2 makes the PLAIN credentials UTF-8, and so are LOGIN's here.
 * The caller passes an initial response only when smtp-server would read
 * it (after EHLO, over TLS, before a login), so that the replies that come
 * first (503, 538) still do.
 */
export function checkCredentials(
  line: Uint8Array,
  continuation: boolean,
): CommandRefusal | undefined {
  if (!isAscii(line)) return undefined;
  const text = new TextDecoder().decode(line).trim();
  const token = continuation ? text : /^AUTH\s+(?:PLAIN|LOGIN)\s+(\S+)$/i.exec(text)?.[1];
  // "*" cancels the exchange (smtp-server answers it), "=" is an empty initial response.
  if (token === undefined || token === "*" || token === "=") return undefined;
  let bytes: Uint8Array | undefined;
  if (BASE64.test(token) && token.length % 4 !== 1) {
    try {
      bytes = Uint8Array.from(atob(token), (c) => c.charCodeAt(0));
    } catch {
      bytes = undefined;
    }
  }
  if (bytes === undefined) {
    // RFC 4954 section 4: a client response that cannot be BASE64-decoded
    // gets 501, 5.5.2 by its section 6.
    return {
      reply: reply(501, "5.5.2", "Error: cannot decode the response as base64"),
      enhanced: true,
      reason: "bad_base64",
    };
  }
  try {
    strictUtf8.decode(bytes);
    return undefined;
  } catch {
    // RFC 4954 section 4: a client response that cannot be read gets 501.
    return {
      reply: reply(501, "5.5.2", "Error: bad UTF-8 syntax"),
      enhanced: true,
      reason: "bad_utf8",
    };
  }
}
