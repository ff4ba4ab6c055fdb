/**
 * The rules of mail from authenticated users: the envelope sender must be
 * an address of the user's own domain (so a stolen password cannot send
 * as anyone), and recipients anywhere are accepted (relaying), which no
 * other client ever gets.
 *
 * @module
 */

import { normalizeDomain } from "../aliases/normalize.ts";
import { reply, type SmtpReply } from "./reply.ts";

/**
 * The refusal of `sender` for `user` (both `name@domain`), or undefined
 * when the sender is in the user's domain. The null sender is refused:
 * bounces come from the server, not from users. Domains are compared as
 * A-labels in lower case: smtp-server hands over an address of an IDN
 * domain with U-labels (`bücher.test`), while the user logged in with the
 * domain as configured (`xn--bcher-kva.test`), and either may be either.
 */
export function senderRefusal(user: string, sender: string): SmtpReply | undefined {
  const domainOf = (address: string) =>
    normalizeDomain(address.slice(address.lastIndexOf("@") + 1));
  if (sender !== "" && sender.includes("@") && domainOf(sender) === domainOf(user)) {
    return undefined;
  }
  // RFC 3463: 5.7.1, delivery not authorized; the message is refused.
  return reply(
    550,
    "5.7.1",
    `Sender address <${sender}> is not yours to use; send as an address of ${domainOf(user)}`,
  );
}
