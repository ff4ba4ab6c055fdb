/**
 * Example alias-exists hook: accepts role addresses of every local domain
 * (`abuse@`, `hostmaster@`, …) even when no file lists them, so that they
 * pass RCPT and reach the alias-resolve hook or a mailbox.
 *
 * Copy to `<config dir>/hooks/alias-exists.ts`.
 *
 * @module
 */

import type { AliasExistsResult, AliasInput } from "../mod.ts";

/** RFC 2142 mailbox names for common services. */
const ROLES = new Set(["abuse", "hostmaster", "noc", "security", "webmaster"]);

/** True for the role names. */
export default function exists(input: AliasInput): AliasExistsResult {
  return ROLES.has(input.address.slice(0, input.address.lastIndexOf("@")));
}
