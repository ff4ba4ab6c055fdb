/**
 * Example pre-delivery-attempt hook: a recipient blacklist. Attempts to an
 * address listed in `recipient_blacklist.txt` (one address a line, any
 * case, blank lines ignored) fail permanently, so the sender gets a bounce
 * saying "This address is on an internal blacklist. (#5.7.1)".
 *
 * The file lives in the configuration directory (the hook's working
 * directory) and is read again when the copy in the hook's state is more
 * than three seconds old, so edits apply without a reload. The hook may
 * only read it when `postern.yaml` grants it:
 *
 * ```yaml
 * hooks:
 *   pre_delivery_attempt:
 *     allow:
 *       read: ["recipient_blacklist.txt"]
 * ```
 *
 * A missing or unreadable file makes the hook throw, which defers every
 * attempt (a temporary failure) until the file can be read again.
 *
 * Copy to `<config dir>/hooks/pre-delivery-attempt.ts`.
 *
 * @module
 */

import type { HookState, PreDeliveryAttemptInput, PreDeliveryAttemptResult } from "../mod.ts";

/** The blacklist, relative to the configuration directory. */
const BLACKLIST_FILE = "recipient_blacklist.txt";

/** How long a copy of the blacklist is used before the file is read again. */
const REREAD_AFTER_MS = 3_000;

/** The blacklist as the state holds it. */
interface Blacklist {
  readAt: number;
  addresses: Set<string>;
}

/** The state's copy of the blacklist, read again when it is stale. */
async function blacklist(state: HookState): Promise<Set<string>> {
  const now = Date.now();
  const held = state["blacklist"] as Blacklist | undefined;
  if (held !== undefined && Math.abs(now - held.readAt) <= REREAD_AFTER_MS) {
    return held.addresses;
  }
  const text = await Deno.readTextFile(BLACKLIST_FILE);
  const addresses = new Set(
    text.split("\n").map((line) => line.trim().toLowerCase()).filter((line) => line !== ""),
  );
  state["blacklist"] = { readAt: now, addresses } satisfies Blacklist;
  return addresses;
}

/** Bounces blacklisted recipients; the others go ahead. */
export default async function recipientBlacklist(
  input: PreDeliveryAttemptInput,
  state: HookState,
): Promise<PreDeliveryAttemptResult> {
  if ((await blacklist(state)).has(input.recipient.toLowerCase())) {
    return { action: "dump", message: "This address is on an internal blacklist. (#5.7.1)" };
  }
  return { action: "normal" };
}
