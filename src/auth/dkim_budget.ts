/**
 * A bound on the DNS work of one message's DKIM check. mailauth looks up
 * the key of every DKIM-Signature field, one after the other, with no
 * limit: a message with a thousand signatures whose key names never answer
 * held its session for a thousand DNS timeouts (5,153 ms for five
 * signatures at a 1 s timeout), past every deadline, as none runs while
 * Postern checks a message. RFC 6376 section 6.1 lets a verifier limit the
 * signatures it checks; Postern checks the first few, within a time budget,
 * and drops the rest unchecked (they cannot pass, so DMARC is decided on
 * the ones checked).
 *
 * @module
 */

import type { ResolveFunction } from "../dns/mod.ts";

/** The most DKIM keys looked up for one message (RFC 6376 section 6.1). */
export const MAX_DKIM_KEY_LOOKUPS = 10;

/** The time after the first key lookup past which no more are started. */
export const DKIM_LOOKUP_BUDGET_MS = 15_000;

/** The error code of a lookup refused by the budget. */
export const OVER_BUDGET = "EPOSTERN_DKIM_BUDGET";

/**
 * `resolve` for one message's DKIM check: the first
 * {@linkcode MAX_DKIM_KEY_LOOKUPS} lookups within
 * {@linkcode DKIM_LOOKUP_BUDGET_MS} go through; later ones fail at once
 * with the code {@linkcode OVER_BUDGET}.
 */
export function budgetedResolver(
  resolve: ResolveFunction,
  now: () => number = Date.now,
): ResolveFunction {
  let lookups = 0;
  let started: number | undefined;
  return (name, rrtype) => {
    started ??= now();
    if (++lookups > MAX_DKIM_KEY_LOOKUPS || now() - started > DKIM_LOOKUP_BUDGET_MS) {
      return Promise.reject(
        Object.assign(new Error("not checked: over the message's DKIM budget"), {
          code: OVER_BUDGET,
        }),
      );
    }
    return resolve(name, rrtype);
  };
}
