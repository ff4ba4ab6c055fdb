/**
 * Example pre-delivery-attempt hook that leaves every remote delivery
 * attempt as Postern planned it: the smallest hook of this kind, and a
 * starting point for your own.
 *
 * Postern calls it before each attempt to a remote recipient, with the
 * attempt's details and a state object that lives as long as its worker
 * (until the file changes, a restart, or a timeout or crash ends it).
 *
 * Copy to `<config dir>/hooks/pre-delivery-attempt.ts`.
 *
 * @module
 */

import type { PreDeliveryAttemptResult } from "../mod.ts";

/** Every attempt goes ahead unchanged. */
export default function preDeliveryAttempt(): PreDeliveryAttemptResult {
  return { action: "normal" };
}
