/**
 * Example pre-delivery-attempt hook: moves the mail of one send to another
 * virtual MTA after it was queued. Messages submitted with the header
 * `X-SendID: trans170101` leave through the virtual MTA `smtp1-3`, which
 * `postern.yaml` must define:
 *
 * ```yaml
 * outbound:
 *   virtual_mtas:
 *     smtp1-3: { bind: 192.0.2.13, ehlo: smtp1-3.example.com }
 * ```
 *
 * Each match writes a line to the hook's log (`<data dir>/log/pre-delivery-attempt.log`).
 *
 * Copy to `<config dir>/hooks/pre-delivery-attempt.ts`.
 *
 * @module
 */

import type { PreDeliveryAttemptInput, PreDeliveryAttemptResult } from "../mod.ts";

/** The send to move. */
const SENDID = "trans170101";

/** The virtual MTA it moves to. */
const VIRTUAL_MTA = "smtp1-3";

/** Sends the matching messages through {@linkcode VIRTUAL_MTA}. */
export default function changeVirtualMta(input: PreDeliveryAttemptInput): PreDeliveryAttemptResult {
  if (input.sendid === SENDID) {
    console.error(`pre_delivery_attempt_hook: matched SendID ${SENDID} for ${input.recipient}`);
    return { action: "new_mtaid", new_mtaid: VIRTUAL_MTA };
  }
  return { action: "normal" };
}
