/**
 * The records kept in the spool, as valibot schemas: they are validated
 * whenever they are read back from disk.
 *
 * @module
 */

import * as v from "valibot";

/** The envelope stored at the head of every spool file. */
export const EnvelopeSchema = v.strictObject({
  /** Format version. */
  v: v.literal(1),
  id: v.pipe(v.string(), v.regex(/^[0-9a-z]{16}$/)),
  /** Envelope sender; "" for the null sender. */
  from: v.string(),
  /** Envelope recipients as given at RCPT TO. */
  to: v.pipe(v.array(v.pipe(v.string(), v.minLength(3))), v.minLength(1)),
  /** When the message was accepted (ISO 8601). */
  received_at: v.pipe(v.string(), v.isoTimestamp()),
  client: v.strictObject({
    ip: v.string(),
    helo: v.string(),
    tls: v.boolean(),
  }),
  /** The client declared SMTPUTF8 (RFC 6531). */
  smtputf8: v.boolean(),
  /** SendID from the message's SendID header (the header itself was removed). */
  sendid: v.optional(v.string()),
  /** ListID from the message's ListID header (removed likewise). */
  listid: v.optional(v.string()),
  /** A delivery status notification we generated (never bounced in turn). */
  dsn: v.optional(v.boolean()),
  /**
   * Whether the header section has a `Delivered-To:` field, as noted at
   * intake; absent when nobody looked (read the header to know).
   */
  delivered_to: v.optional(v.boolean()),
});

/** The envelope of a spooled message. */
export type Envelope = v.InferOutput<typeof EnvelopeSchema>;

/** Delivery state of one recipient. */
export const RecipientStatusSchema = v.picklist(["pending", "sent", "failed"]);

/** Delivery state of one recipient. */
export type RecipientStatus = v.InferOutput<typeof RecipientStatusSchema>;

/** Per-recipient delivery state, kept beside the message once it changes. */
export const DeliveryStateSchema = v.strictObject({
  v: v.literal(1),
  recipients: v.array(v.strictObject({
    address: v.string(),
    status: RecipientStatusSchema,
    attempts: v.pipe(v.number(), v.integer(), v.minValue(0)),
    last_error: v.optional(v.string()),
    /** Enhanced status code of the last failure (RFC 3463), for the bounce. */
    last_status: v.optional(v.string()),
    /** The remote host that gave the last answer. */
    remote_mta: v.optional(v.string()),
    /**
     * Targets of this recipient's alias already delivered while others wait
     * for a retry (see `DeliveryResult`), so the retry does not repeat them.
     */
    done: v.optional(v.array(v.string())),
  })),
  /** A delay warning was sent to the sender. */
  warned: v.optional(v.boolean()),
  /** Earliest time of the next attempt (ISO 8601). */
  next_attempt_at: v.optional(v.pipe(v.string(), v.isoTimestamp())),
  /** Held by the administrator: no attempt until released. */
  held: v.optional(v.boolean()),
});

/** Per-recipient delivery state of a queued message. */
export type DeliveryState = v.InferOutput<typeof DeliveryStateSchema>;

/** The state of a message no delivery has been tried for. */
export function initialState(envelope: Envelope): DeliveryState {
  return {
    v: 1,
    recipients: envelope.to.map((address) => ({ address, status: "pending", attempts: 0 })),
  };
}

/**
 * A copy of `state` that shares nothing with it: what a delivery attempt
 * changes before the new state is saved. Field by field, as structuredClone
 * costs several times as much on Deno (its serializer), once per attempt.
 */
export function copyState(state: DeliveryState): DeliveryState {
  return {
    ...state,
    recipients: state.recipients.map((r) => r.done ? { ...r, done: [...r.done] } : { ...r }),
  };
}
