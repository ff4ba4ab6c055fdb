/**
 * Address normalization for lookups: case, suffixes and drop characters.
 *
 * @module
 */

import { domainToASCII } from "node:url";

/** Characters that matter when looking a local part up. */
export interface LookupOptions {
  /** Characters that start an ignored suffix, as `+` in `user+tag`. */
  suffixSeparators: string;
  /** Characters removed before lookup, as `.` in `first.last`. */
  dropCharacters: string;
}

/** Splits `local@domain` at the last `@`; the domain is lower-cased ASCII. */
export function splitAddress(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf("@");
  if (at < 0) return { local: address, domain: "" };
  return { local: address.slice(0, at), domain: normalizeDomain(address.slice(at + 1)) };
}

/**
 * Lower-cases a domain and turns an internationalized one into A-labels, so
 * that `EXAMPLE.com`, `example.com.` and `bücher.de`/`xn--bcher-kva.de` compare
 * equal.
 */
export function normalizeDomain(domain: string): string {
  const lower = domain.toLowerCase().replace(/\.$/, "");
  if (![...lower].some((c) => c.charCodeAt(0) > 0x7f)) return lower;
  return domainToASCII(lower) || lower;
}

/**
 * The form of a local part used to find a user or alias: lower case, without
 * its suffix, without drop characters.
 */
export function lookupKey(local: string, options: LookupOptions): string {
  // RFC 5321 section 4.1.2: "alice" and alice are the same mailbox.
  const unquoted = local.length >= 2 && local.startsWith('"') && local.endsWith('"')
    ? local.slice(1, -1).replace(/\\(.)/g, "$1")
    : local;
  let key = unquoted.toLowerCase();
  for (let i = 0; i < key.length; i++) {
    if (options.suffixSeparators.includes(key[i]!)) {
      // A separator as the first character is part of the name, not a suffix.
      if (i > 0) key = key.slice(0, i);
      break;
    }
  }
  if (options.dropCharacters !== "") {
    key = [...key].filter((c) => !options.dropCharacters.includes(c)).join("");
  }
  return key;
}
