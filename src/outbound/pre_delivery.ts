/**
 * The pre-delivery-attempt hook's outcome, as GreenArrow's reference
 * defines it: an action for the attempt, and on any error (exception,
 * timeout, invalid result, a hook that does not load) a temporary failure
 * with the status text "Error in pre_delivery_attempt_hook (see logfile)".
 *
 * @module
 */

import * as v from "valibot";
import { PreDeliveryAttemptResultSchema } from "../../hooks/mod.ts";
import { type CallOutcome, hookFrame, plainText } from "../hooks/mod.ts";

/** The reference's status text for every failure of the hook. */
export const HOOK_ERROR_TEXT = "Error in pre_delivery_attempt_hook (see logfile)";

/** What the hook decided for one attempt. */
export type PreDeliveryDecision =
  | {
    kind: "deliver";
    /** The virtual MTA to use instead of the routed one. */
    mtaid?: string;
    /** The envelope sender to use instead of the message's. */
    sender?: string;
    /** The domain that routes and connection limits use instead of the recipient's. */
    asIfDomain?: string;
  }
  | { kind: "pause"; message: string }
  | { kind: "dump"; message: string }
  | {
    kind: "error";
    error: string;
    /** The hook did not load: the same error for every attempt until it is fixed. */
    loadError?: boolean;
  };

/** Interprets one call of a module hook. */
export function preDeliveryDecision(outcome: CallOutcome): PreDeliveryDecision {
  if (!outcome.ok) {
    const what = outcome.failure === "hook_error"
      ? "Exception running pre_delivery_attempt_hook"
      : outcome.failure === "timeout"
      ? "pre_delivery_attempt_hook timed out"
      : outcome.failure === "load_error"
      ? "error loading pre_delivery_attempt_hook"
      : `pre_delivery_attempt_hook failed (${outcome.failure})`;
    const first = plainText(outcome.error).split("\n")[0];
    if (outcome.failure !== "load_error") return { kind: "error", error: `${what}: ${first}` };
    // The reference's example of a load error says where ("syntax error at
    // (eval 12) line 3"): the hook's file, line and column, on the one line.
    const where = hookFrame(outcome.error);
    return {
      kind: "error",
      error: `${what}: ${first}${where === undefined ? "" : ` at ${where}`}`,
      loadError: true,
    };
  }
  const parsed = v.safeParse(PreDeliveryAttemptResultSchema, outcome.value);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".");
    return {
      kind: "error",
      error: `invalid return value: ${path ? `${path} ` : ""}${issue.message}`,
    };
  }
  const result = parsed.output;
  switch (result.action) {
    case "normal":
      return withDomain({ kind: "deliver" }, result.deliver_as_if_to_domain);
    case "pause":
      return { kind: "pause", message: result.message ?? "Delivery paused by policy" };
    case "dump":
      return { kind: "dump", message: result.message ?? "Message dumped by policy" };
    case "new_mtaid":
      return withDomain(
        { kind: "deliver", mtaid: result.new_mtaid },
        result.deliver_as_if_to_domain,
      );
    case "new_config":
      return {
        kind: "deliver",
        ...(result.new_mtaid !== undefined ? { mtaid: result.new_mtaid } : {}),
        ...(result.new_sender !== undefined ? { sender: result.new_sender } : {}),
      };
  }
}

function withDomain(
  decision: PreDeliveryDecision & { kind: "deliver" },
  domain: string | undefined,
): PreDeliveryDecision {
  return domain === undefined || domain === ""
    ? decision
    : { ...decision, asIfDomain: domain.toLowerCase() };
}
