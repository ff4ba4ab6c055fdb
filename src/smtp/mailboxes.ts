/**
 * RCPT checks against the mail store: for a domain whose mailboxes are
 * delivered over LMTP, Dovecot's userdb knows which exist, so an unknown
 * user is refused at RCPT instead of bouncing after the message was taken.
 *
 * @module
 */

import type { DomainConfig } from "../config/mod.ts";
import type { DovecotAuth } from "../users/dovecot_auth.ts";
import { splitAddress } from "../aliases/mod.ts";
import { reply, type SmtpReply } from "./reply.ts";

/**
 * Asks the mail store whether a mailbox (`user@domain`, in lookup form)
 * exists; undefined when its domain's mailboxes are not there.
 */
export type MailboxLookup = (address: string) => Promise<"found" | "notfound"> | undefined;

/**
 * A lookup in Dovecot's userdb for the domains with an LMTP server; every
 * other domain is left to Postern's own users files.
 */
export function dovecotMailboxes(
  dovecot: DovecotAuth,
  domains: ReadonlyMap<string, DomainConfig>,
): MailboxLookup {
  return (address) => {
    let domain: string;
    try {
      domain = splitAddress(address).domain;
    } catch {
      return undefined;
    }
    return domains.get(domain)?.lmtp ? dovecot.lookup(address) : undefined;
  };
}

/** RFC 5321 section 4.2.2 and RFC 3463 section 3.4: try again later. */
const STORE_UNAVAILABLE = reply(
  451,
  "4.3.0",
  "Cannot check the mailbox now, try again later",
);

/**
 * The store's answer for a recipient Postern's files do not know: true
 * when the mailbox exists, false when the store does not know it either
 * (or has no say), or the refusal when it could not be asked.
 */
export async function mailboxExists(
  lookup: MailboxLookup,
  address: string,
  onError: (err: unknown) => void,
): Promise<boolean | { reason: string; reply: SmtpReply }> {
  try {
    const answer = lookup(address);
    return answer === undefined ? false : (await answer) === "found";
  } catch (err) {
    onError(err);
    // Never a 5xx for a store we could not ask: the user may well exist.
    return { reason: "mailbox_check_failed", reply: STORE_UNAVAILABLE };
  }
}
