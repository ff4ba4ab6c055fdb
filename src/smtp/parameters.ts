/**
 * The parameters of MAIL FROM and RCPT TO (RFC 5321 section 4.1.2,
 * `esmtp-param`). Each one belongs to a service extension, and a client may
 * use it only when the server offered that extension in its EHLO reply
 * (RFC 5321 section 2.2.1). smtp-server checks the syntax of those it knows
 * but accepts any other, and also the parameters of the extensions Postern
 * hides (DSN's RET, ENVID, NOTIFY, ORCPT; REQUIRETLS), so a client's request
 * (a DSN on success, a TLS-only delivery path) was taken and then silently
 * ignored.
 *
 * @module
 */

import type { SMTPServerAddress, SMTPServerSession } from "smtp-server";
import { reply, type SmtpReply } from "./reply.ts";
import { authenticatedUser } from "./session_client.ts";

/**
 * The MAIL FROM parameters of the extensions every listener offers: SIZE
 * (RFC 1870), BODY (8BITMIME, RFC 6152) and SMTPUTF8 (RFC 6531).
 */
const MAIL_PARAMETERS: ReadonlySet<string> = new Set(["SIZE", "BODY", "SMTPUTF8"]);

/**
 * The name a parameter without a keyword is kept under (` =x`, which
 * smtp-server drops): `esmtp-keyword` has at least one character (RFC 5321
 * section 4.1.2).
 */
export const NAMELESS = "";

/** What the session was offered, beyond what every listener offers. */
export interface OfferedExtensions {
  /**
   * The session began with EHLO. After HELO no extension was offered, so
   * no parameter may be used (RFC 5321 sections 2.2.1 and 4.1.1.11; RFC
   * 6531 section 3.4 for SMTPUTF8 in particular).
   */
  esmtp: boolean;
  /**
   * AUTH was offered and the client used it: the `AUTH=` parameter of MAIL
   * FROM (RFC 4954 section 5). Only submission listeners offer AUTH, and
   * they take MAIL only after it.
   */
  auth: boolean;
}

/** What `session` was offered: EHLO's extensions, and AUTH= once logged in. */
export function offeredIn(session: SMTPServerSession): OfferedExtensions {
  return {
    esmtp: session.openingCommand === "EHLO",
    auth: authenticatedUser(session) !== undefined,
  };
}

/**
 * The refusal of a MAIL FROM (`command` "mail") or RCPT TO ("rcpt") that
 * carries a parameter of no extension offered to the client, or undefined
 * when every parameter belongs to one. RCPT TO has none: DSN's NOTIFY and
 * ORCPT (RFC 3461 section 4) are the only ones smtp-server knows, and DSN
 * is not offered.
 */
export function unsupportedParameter(
  command: "mail" | "rcpt",
  address: SMTPServerAddress,
  offered: OfferedExtensions,
): SmtpReply | undefined {
  const args: unknown = address.args;
  if (typeof args !== "object" || args === null) return undefined;
  for (const key of Object.keys(args)) {
    if (key === NAMELESS) return reply(501, "5.5.4", "Syntax error in parameters: one has no name");
    const known = command === "mail" && offered.esmtp &&
      (MAIL_PARAMETERS.has(key) || (key === "AUTH" && offered.auth));
    // RFC 5321 sections 4.1.1.11 and 4.2.4: a parameter the server does not
    // recognize or cannot implement gets 555; RFC 3463 5.5.4 "invalid
    // command arguments". As Postfix answers.
    if (!known) return reply(555, "5.5.4", `Unsupported parameter: ${printable(key)}`);
  }
  return undefined;
}

/** The parameter's name as the reply may quote it: visible ASCII, at most 64 characters. */
function printable(name: string): string {
  const shown = name.slice(0, 64).replace(/[^\x21-\x7e]/g, "?");
  return name.length > 64 ? `${shown}...` : shown;
}
