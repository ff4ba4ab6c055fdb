/**
 * The RCPT TO decision for unauthenticated clients: local recipients only.
 *
 * @module
 */

import type { RecipientResolver } from "../aliases/mod.ts";
import { Replies, reply, type SmtpReply } from "./reply.ts";

/** Why a recipient was refused, for the mail log and counters. */
export type RecipientRefusal = { reason: string; reply: SmtpReply };

const ROUTING_DENIED = reply(
  550,
  "5.7.1",
  "Relaying denied: sender-specified routing is not allowed",
);

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
  return undefined;
}
