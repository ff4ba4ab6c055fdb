/**
 * Example alias-resolve hook backed by a JSON file in the hook's own
 * folder, `hooks/alias-resolve/aliases.json`, which it may read without
 * any grant:
 *
 * ```json
 * { "sales@example.com": ["ann@example.com", "bob@example.com"],
 *   "tickets@example.com": "| /usr/local/bin/new-ticket" }
 * ```
 *
 * A pipe target runs only a program the hook's grants name:
 * `hooks.alias_resolve.allow.run: ["/usr/local/bin/new-ticket"]` here.
 *
 * The file is read once per worker; saving it restarts the worker (the
 * runner watches the hook's folder), so changes apply within a second.
 *
 * Copy to `<config dir>/hooks/alias-resolve.ts`.
 *
 * @module
 */

import type { AliasInput, AliasResolveResult } from "../mod.ts";

const table: Record<string, string | string[]> = JSON.parse(
  await Deno.readTextFile(new URL("./alias-resolve/aliases.json", import.meta.url)),
);

/** Targets of `address`, or nothing when it is not in the table. */
export default function resolve(input: AliasInput): AliasResolveResult {
  return table[input.address];
}
