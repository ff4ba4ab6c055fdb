/**
 * The RCPT TO decision for unauthenticated clients: local recipients only.
 *
 * @module
 */

import type { RecipientResolver } from "../aliases/mod.ts";
import { mailboxDirName } from "../delivery/maildir.ts";
import { Replies, reply, type SmtpReply } from "./reply.ts";

/** Why a recipient was refused, for the mail log and counters. */
export type RecipientRefusal = { reason: string; reply: SmtpReply };

const ROUTING_DENIED = reply(
  550,
  "5.7.1",
  "Relaying denied: sender-specified routing is not allowed",
);

/**
 * RFC 5321 section 4.5.3.1.1: a local part of up to 64 octets must be
 * taken; longer ones may be refused. Postern refuses them in a domain that
 * takes any name, where each name makes a mailbox of its own.
 */
export const MAX_ANY_NAME_OCTETS = 64;

/**
 * Most bytes of one path component on Linux (NAME_MAX) and most other
 * file systems: a mailbox folder name must fit.
 */
export const MAX_FOLDER_NAME_BYTES = 255;

/**
 * RFC 5321 section 4.5.3.1.9 gives "501 Path too long" for an object over
 * a limit; RFC 3463 X.1.3, "bad destination mailbox address syntax".
 */
const LOCAL_PART_TOO_LONG = reply(501, "5.1.3", "Bad recipient address: local part too long");

/**
 * A name with an `@`, which no users or aliases file can hold: it exists
 * only in a domain that takes any name (`any_user`, or a `*` alias).
 */
const UNLISTED_NAME = '"@"';

/**
 * Checks an envelope recipient. Returns undefined when it is a local
 * recipient that exists, or the refusal otherwise.
 */
export function checkRecipient(
  rawAddress: string,
  resolver: RecipientResolver,
): RecipientRefusal | undefined {
  // RFC 5321 section 3.6.1 and appendix C: source routes ("@a,@b:user@c")
  // are to be ignored, which leaves the final address to be judged.
  const address = rawAddress.startsWith("@")
    ? rawAddress.slice(rawAddress.indexOf(":") + 1)
    : rawAddress;
  // RFC 5321 section 4.1.1.3: the domainless postmaster is always accepted.
  if (address.toLowerCase() === "postmaster") {
    return resolver.exists(address)
      ? undefined
      : { reason: "no_such_user", reply: Replies.noSuchUser };
  }
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) {
    return { reason: "bad_address", reply: reply(501, "5.1.3", "Bad recipient address syntax") };
  }
  const domain = address.slice(at + 1);
  if (!resolver.isLocalDomain(domain)) {
    return { reason: "relay_denied", reply: Replies.relayDenied };
  }

  let local = address.slice(0, at);
  if (local.startsWith('"') && local.endsWith('"') && local.length >= 2) {
    local = local.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  // user%host@local, host!user@local and "user@host"@local ask a relay to
  // route onwards (Postfix's allow_untrusted_routing=no refuses them too).
  if (/[%!@]/.test(local)) return { reason: "routing_denied", reply: ROUTING_DENIED };
  if (!resolver.exists(`${local}@${domain}`)) {
    return { reason: "no_such_user", reply: Replies.noSuchUser };
  }
  if (tooLong(address, resolver)) {
    return { reason: "local_part_too_long", reply: LOCAL_PART_TOO_LONG };
  }
  return undefined;
}

/**
 * True when the mailbox of a local `address` could not be made: its folder
 * name (as Maildir delivery encodes it) over {@linkcode MAX_FOLDER_NAME_BYTES},
 * or, in a domain that takes any name, its name over
 * {@linkcode MAX_ANY_NAME_OCTETS}. Such a recipient was taken, then failed
 * with ENAMETOOLONG at every attempt for days, then bounced.
 */
function tooLong(address: string, resolver: RecipientResolver): boolean {
  // The lookup form is the name delivery gives the mailbox: lower case,
  // without its suffix and dropped characters.
  const normalized = resolver.normalize(address);
  const at = normalized.lastIndexOf("@");
  const name = normalized.slice(0, at);
  const domain = normalized.slice(at + 1);
  const encoder = new TextEncoder();
  for (const folder of [mailboxDirName(domain), mailboxDirName(name)]) {
    if (encoder.encode(folder).byteLength > MAX_FOLDER_NAME_BYTES) return true;
  }
  return encoder.encode(name).byteLength > MAX_ANY_NAME_OCTETS &&
    resolver.exists(`${UNLISTED_NAME}@${domain}`);
}
