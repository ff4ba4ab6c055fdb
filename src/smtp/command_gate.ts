/**
 * What Postern refuses of a command line before smtp-server sees it: a
 * line over the length limit, BDAT, and the raw-byte checks of
 * command_check.ts. Each refusal says its stage and reason for the log,
 * and whether the session ends with it.
 *
 * @module
 */

import { checkCommand, checkCredentials } from "./command_check.ts";
import type { Stage } from "./library_replies.ts";
import { reply, type SmtpReply } from "./reply.ts";

/**
 * RFC 5321 section 3.3: after a 5yz reply to DATA the client must not send
 * the message, and RFC 2920 section 3.1 makes DATA the last command of a
 * pipelined group. A message sent anyway would run as commands; Postern
 * answers 554 5.5.0 and disconnects, as Postfix 3.9 does
 * (smtpd_forbid_unauth_pipelining). The same goes for every BDAT, which
 * Postern does not offer (no CHUNKING): RFC 3030 section 2 sends its chunk
 * right behind the command line without waiting for a reply, so whatever
 * follows a BDAT, now or later, is message data.
 */
export const PROTOCOL_SYNC = reply(554, "5.5.0", "Error: SMTP protocol synchronization");

/** RFC 5321 sections 4.2.2 and 4.5.3.1.4: a command line too long gets 500. */
const LINE_TOO_LONG = reply(500, "5.5.2", "Error: line too long");
/** RFC 4954 section 6: the same for a line of an AUTH exchange. */
const AUTH_LINE_TOO_LONG = reply(500, "5.5.6", "Authentication exchange line is too long");

/** What the gate needs to know of the line and the session. */
export interface GateContext {
  /** The line answers a 334 AUTH challenge. */
  answering: boolean;
  /** The line stands for one over the length limit (input_tracker.ts). */
  lineTooLong: boolean;
  /** A MAIL FROM was accepted and the transaction is open. */
  transactionOpen: boolean;
  /** That MAIL FROM carried the SMTPUTF8 parameter. */
  smtputf8: boolean;
  /** smtp-server would read the credentials of an AUTH line now. */
  authReady: boolean;
}

/** A refusal of the gate. */
export interface GateRefusal {
  stage: Stage;
  reason: string;
  reply: SmtpReply;
  /** False for replies that carry no enhanced code (to EHLO and HELO). */
  enhanced: boolean;
  /** The recipient refused, for the log. */
  to?: string;
  /** The session ends with the reply. */
  close: boolean;
}

/** The verb of a line as smtp-server reads it (the first word, upper case). */
export function verbOf(line: Uint8Array): string {
  let end = line.indexOf(0x20);
  if (end < 0) end = line.length;
  return String.fromCharCode(...line.subarray(0, Math.min(end, 16))).toUpperCase();
}

/** The refusal of `line`, or undefined when smtp-server may handle it. */
export function gateCommand(line: Uint8Array, context: GateContext): GateRefusal | undefined {
  if (context.lineTooLong) {
    return context.answering
      ? refusal("auth", "line_too_long", AUTH_LINE_TOO_LONG)
      : refusal("command", "line_too_long", LINE_TOO_LONG);
  }
  if (context.answering) {
    const bad = checkCredentials(line, true);
    return bad && refusal("auth", bad.reason, bad.reply);
  }
  const verb = verbOf(line);
  if (/^BDAT(\s|$)/.test(verb)) return { ...refusal("data", "bdat", PROTOCOL_SYNC), close: true };
  const bad = checkCommand(line, context);
  if (bad) {
    const stage: Stage = bad.reason === "bad_utf8"
      ? "command"
      : bad.reason === "non_ascii_helo"
      ? "helo"
      : verb === "MAIL"
      ? "mail"
      : "rcpt";
    return {
      ...refusal(verb === "AUTH" ? "auth" : stage, bad.reason, bad.reply),
      enhanced: bad.enhanced,
      ...(bad.to !== undefined ? { to: bad.to } : {}),
    };
  }
  if (verb !== "AUTH" || !context.authReady) return undefined;
  const credentials = checkCredentials(line, false);
  return credentials && refusal("auth", credentials.reason, credentials.reply);
}

function refusal(stage: Stage, reason: string, r: SmtpReply): GateRefusal {
  return { stage, reason, reply: r, enhanced: true, close: false };
}
