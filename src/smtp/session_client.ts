/**
 * Who is at the other end of an SMTP session, as intake's log lines and
 * checks see it: the client's address and HELO name, and the user it
 * authenticated as.
 *
 * @module
 */

import type { SMTPServerSession } from "smtp-server";
import type { ClientInfo } from "../log/mod.ts";

/**
 * The user the client authenticated as, if any. smtp-server sets
 * `session.user` to false after STARTTLS (RFC 3207 section 4.2), so only a
 * user name or an object with one counts.
 */
export function authenticatedUser(session: SMTPServerSession): string | undefined {
  const user: unknown = session.user;
  if (typeof user === "string" && user !== "") return user;
  if (typeof user === "object" && user !== null && "username" in user) {
    const name = (user as { username: unknown }).username;
    if (typeof name === "string" && name !== "") return name;
  }
  return undefined;
}

/** The client of `session`, as the mail log names it. */
export function client(session: SMTPServerSession): ClientInfo {
  return { ip: session.remoteAddress, helo: session.hostNameAppearsAs || undefined };
}
