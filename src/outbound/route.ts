/**
 * Picks the virtual MTA for a recipient: the first route whose sender or
 * recipient domain matches, else "default".
 *
 * @module
 */

import { splitAddress } from "../aliases/mod.ts";
import type { OutboundConfig } from "./settings.ts";

/**
 * The domain of an address as MX lookups and routes need it: lower case,
 * A-labels for an internationalized one; "" when there is none.
 */
export function domainOf(address: string): string {
  return splitAddress(address).domain;
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
