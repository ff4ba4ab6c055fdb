/**
 * The key a client is counted under by every per-client limit: the SMTP
 * connection and rate limits (src/smtp/), and the per-address connection
 * cap of the HTTP servers (src/http/). Shared here so that neither area
 * imports the other.
 *
 * @module
 */

import { isIPv6 } from "node:net";

/**
 * The key a client is counted under: its IPv4 address, or the /64 of an
 * IPv6 address, since one host can use every address of its /64
 * (RFC 4291 section 2.5.4) and would otherwise escape every limit.
 *
 * @example Keys
 * ```ts
 * import { clientKey } from "./client_key.ts";
 * clientKey("::ffff:192.0.2.1"); // "192.0.2.1"
 * clientKey("2001:db8:1:2::9"); // "2001:db8:1:2::/64"
 * ```
 */
export function clientKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = "", tail = ""] = ip.toLowerCase().split("::", 2);
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === "" ? [] : tail.split(":");
  const groups = ip.includes("::")
    ? [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups]
    : headGroups;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}
