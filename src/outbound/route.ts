/**
 * Picks the virtual MTA for a recipient: the first route whose sender or
 * recipient domain matches, else "default".
 *
 * @module
 */

import type { OutboundConfig } from "./settings.ts";

/** The domain of an address, in lower case; "" when there is none. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : address.slice(at + 1).toLowerCase();
}

/**
 * The name of the virtual MTA for mail from `sender` to a recipient in
 * `recipientDomain` (GreenArrow's routing rules, reduced to domains).
 */
export function chooseMta(config: OutboundConfig, sender: string, recipientDomain: string): string {
  const senderDomain = domainOf(sender);
  for (const route of config.routes) {
    if (route.senderDomain !== undefined && route.senderDomain !== senderDomain) continue;
    if (route.recipientDomain !== undefined && route.recipientDomain !== recipientDomain) continue;
    return route.mta;
  }
  return "default";
}
