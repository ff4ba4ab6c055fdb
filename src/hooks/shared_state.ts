/**
 * Fleet-wide state for hooks: `shared.increment(key, by, ttl)`,
 * `shared.get(key)` and `shared.set(key, value, ttl)`, which a hook calls
 * during a call and Postern answers over the hook channel. The hook needs
 * no network grant: Postern reaches the cluster's server for it, under a
 * key namespaced by the hook point, so one hook cannot read or change
 * another's keys (nor Postern's own rate-limit counts).
 *
 * Every request is hostile input (it comes from the worker): it is checked
 * here with valibot, and keys and values are bounded.
 *
 * @module
 */

import * as v from "valibot";

/** Longest key, in characters (printable ASCII). */
export const MAX_SHARED_KEY = 200;
/** Longest value of `set`, in characters. */
export const MAX_SHARED_VALUE = 4096;
/** Longest time to live: 31 days, in seconds. */
export const MAX_SHARED_TTL = 31 * 24 * 3600;
/** Shared-state requests one call may have waiting at a time; more is a protocol error. */
export const MAX_SHARED_PENDING = 64;

const Key = v.pipe(
  v.string("the key must be text"),
  v.regex(/^[\x21-\x7e]+$/, "the key must be 1 or more printable ASCII characters, no spaces"),
  v.maxLength(MAX_SHARED_KEY, `the key must be at most ${MAX_SHARED_KEY} characters`),
);
const Ttl = v.pipe(
  v.number("the ttl must be a number of seconds"),
  v.integer("the ttl must be whole seconds"),
  v.minValue(0, "the ttl must not be negative"),
  v.maxValue(MAX_SHARED_TTL, `the ttl must be at most ${MAX_SHARED_TTL} seconds`),
);
const RequestId = v.pipe(v.number(), v.integer(), v.minValue(1));

/** A shared-state request from a worker. */
export const SharedRequestSchema = v.variant("op", [
  v.strictObject({
    t: v.literal("shared"),
    rid: RequestId,
    op: v.literal("increment"),
    key: Key,
    by: v.pipe(
      v.number("by must be a number"),
      v.integer("by must be a whole number"),
      v.minValue(-1_000_000_000, "by must be at least -1000000000"),
      v.maxValue(1_000_000_000, "by must be at most 1000000000"),
    ),
    ttl: Ttl,
  }),
  v.strictObject({ t: v.literal("shared"), rid: RequestId, op: v.literal("get"), key: Key }),
  v.strictObject({
    t: v.literal("shared"),
    rid: RequestId,
    op: v.literal("set"),
    key: Key,
    value: v.pipe(
      v.string("the value must be text"),
      v.maxLength(MAX_SHARED_VALUE, `the value must be at most ${MAX_SHARED_VALUE} characters`),
    ),
    ttl: Ttl,
  }),
]);

/** A checked shared-state request. */
export type SharedRequest = v.InferOutput<typeof SharedRequestSchema>;

/** Where shared state is kept: the cluster's server. */
export interface SharedStore {
  /**
   * Runs `request` for the hook point `hook`: the new count (increment),
   * the value or null (get), or null (set).
   *
   * @throws {Error} when the store cannot answer; the hook's call sees it.
   */
  run(hook: string, request: SharedRequest): Promise<number | string | null>;
}

/** The answer sent back to the worker. */
export type SharedAnswer =
  | { t: "shared_result"; rid: number; ok: true; value: number | string | null }
  | { t: "shared_result"; rid: number; ok: false; error: string };

/**
 * Checks a request and runs it. Returns the answer for the worker, or
 * undefined when the request cannot even be answered (no request ID).
 */
export async function answerShared(
  store: SharedStore | undefined,
  hook: string,
  raw: Record<string, unknown>,
): Promise<SharedAnswer | undefined> {
  const rid = raw["rid"];
  if (typeof rid !== "number" || !Number.isSafeInteger(rid) || rid < 1) return undefined;
  const parsed = v.safeParse(SharedRequestSchema, raw);
  if (!parsed.success) {
    return {
      t: "shared_result",
      rid,
      ok: false,
      error: `shared.${String(raw["op"])}: ${parsed.issues[0].message}`,
    };
  }
  if (store === undefined) {
    return {
      t: "shared_result",
      rid,
      ok: false,
      error: "shared state needs the cluster setting (a shared Redis or Valkey server)",
    };
  }
  try {
    return { t: "shared_result", rid, ok: true, value: await store.run(hook, parsed.output) };
  } catch (err) {
    return {
      t: "shared_result",
      rid,
      ok: false,
      error: `shared.${parsed.output.op}: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}
