/**
 * The error replies smtp-server sends on its own (syntax errors, commands
 * out of sequence, AUTH before STARTTLS, a declared SIZE over the limit,
 * its timeouts), as Postern sends and logs them: each gets the enhanced
 * status code the RFCs give it, where smtp-server's (derived from the reply
 * number alone) is wrong, and a stable reason for the mail log and the
 * counters (`smtp_rejected_total{stage,reason}`: a small, fixed set).
 *
 * @module
 */

import { reply, type SmtpReply } from "./reply.ts";

/** Where in the session a reply was given, for the log. */
export type Stage = "connect" | "helo" | "mail" | "rcpt" | "data" | "auth" | "command";

/**
 * The stage of a command: `verb` as smtp-server reads it (the first word,
 * upper case); `answering` for a line that answers a 334 AUTH challenge.
 */
export function stageOf(verb: string | undefined, answering: boolean): Stage {
  if (answering) return "auth";
  switch (verb) {
    case "EHLO":
    case "HELO":
    case "LHLO":
      return "helo";
    case "MAIL":
      return "mail";
    case "RCPT":
      return "rcpt";
    case "DATA":
    case "BDAT":
      return "data";
    case "AUTH":
      return "auth";
    default:
      return "command";
  }
}

/** Reasons of replies recognised by their number and text. */
const REASONS: ReadonlyArray<readonly [number, RegExp, string]> = [
  [421, /talk too soon/i, "early_talker"],
  [421, /HTTP requests/i, "http_request"],
  [421, /shutting down/i, "shutdown"],
  [421, /timeout/i, "timeout"],
  [421, /too many connected clients/i, "too_many_connections"],
  [500, /not recognized/i, "unknown_command"],
  [501, /Authentication aborted/i, "auth_aborted"],
  [502, /VRFY/, "vrfy_disabled"],
  [503, /HELO\/EHLO first/i, "helo_first"],
  [503, /No identity changes/i, "already_authenticated"],
  [504, /authentication type/i, "unknown_mechanism"],
];

/** Reasons by reply number, for the rest. */
const BY_CODE: Readonly<Record<number, string>> = {
  421: "closing",
  451: "local_error",
  452: "too_many_recipients",
  500: "bad_syntax",
  501: "bad_syntax",
  502: "not_implemented",
  503: "bad_sequence",
  504: "not_implemented",
  530: "auth_required",
  535: "bad_credentials",
  538: "tls_required",
  550: "not_allowed",
  552: "message_too_big",
  555: "bad_parameter",
};

/**
 * What Postern sends for an error reply of smtp-server (`enhanced` is the
 * code smtp-server would attach, "" for none), and why, for the log.
 */
export function libraryReply(
  code: number,
  enhanced: string,
  text: string,
  stage: Stage,
): { reply: SmtpReply; reason: string } {
  const reason = REASONS.find(([c, pattern]) => c === code && pattern.test(text))?.[2] ??
    BY_CODE[code] ?? (code < 500 ? "temporary_failure" : "refused");
  let fixed = enhanced;
  if (code === 538) {
    // RFC 4954 section 6: "538 5.7.11 Encryption required for requested
    // authentication mechanism" (smtp-server says 5.7.0).
    fixed = "5.7.11";
  } else if (stage === "auth" && code === 501 && enhanced !== "" && !/^Error: syntax/i.test(text)) {
    // RFC 4954 section 4: a response that cannot be BASE64-decoded (or
    // decodes to no usable credentials) gets 501, with 5.5.2 by its
    // section 6; a client's "*" cancels the exchange, 501 5.7.0 as Postfix
    // answers it (smtp-server says 5.5.4 for both). An AUTH line of bad
    // syntax ("AUTH PLAIN a b") keeps 5.5.4, invalid command arguments
    // (RFC 3463).
    fixed = reason === "auth_aborted" ? "5.7.0" : "5.5.2";
  }
  return { reply: reply(code, fixed, text), reason };
}
