/**
 * The hook SDK: what Postern passes to each TypeScript hook and what a hook
 * may return, as types for hook authors and as the valibot schemas the
 * runner checks every result with.
 *
 * A module hook lives in the configuration directory as
 * `hooks/<hook point>.ts` and default-exports one async function:
 *
 * ```ts
 * import type { PostDataInput, PostDataResult } from "./mod.ts";
 *
 * export default async function (input: PostDataInput): Promise<PostDataResult> {
 *   const text = await new Response(input.message).text();
 *   if (text.includes("viagra")) return { action: "reject", message: "Looks like spam" };
 *   return { action: "accept", headers: ["X-Checked: yes"] };
 * }
 * ```
 *
 * Type-only imports are erased before the hook runs, so a hook may import
 * these types from anywhere without a read permission for this file.
 *
 * @module
 */

import * as v from "valibot";

export * from "./types.ts";

const ReplyText = v.pipe(v.string("message must be text"), v.maxLength(2000));

/** Schema of {@linkcode PostDataInput} (for `postern hook run --input`). */
export const PostDataInputSchema = v.strictObject({
  queueId: v.optional(v.string(), "0000000000000000"),
  remoteAddr: v.string(),
  ehloDomain: v.optional(v.string(), ""),
  mailFrom: v.string(),
  rcptTo: v.array(v.string()),
  authAs: v.optional(v.string(), ""),
  onTls: v.optional(v.boolean(), false),
  fromLocalDomain: v.optional(v.boolean(), false),
  spfPass: v.optional(v.boolean(), false),
});

/** Schema of {@linkcode AliasInput}. */
export const AliasInputSchema = v.strictObject({ address: v.string() });

/** Schema the runner checks post-data results with. */
export const PostDataResultSchema = v.union([
  v.undefined(),
  v.null(),
  v.strictObject({
    action: v.literal("accept"),
    headers: v.optional(v.union([
      v.array(v.string("each header must be text")),
      v.record(v.string(), v.string("each header value must be text")),
    ])),
  }),
  v.strictObject({ action: v.literal("reject"), message: ReplyText }),
  v.strictObject({ action: v.literal("defer"), message: ReplyText }),
], 'must be nothing or { action: "accept" | "reject" | "defer", … }');

/** Schema the runner checks alias-resolve results with. */
export const AliasResolveResultSchema = v.union([
  v.undefined(),
  v.null(),
  v.string(),
  v.array(v.string()),
], "must be a string, a list of strings, or nothing");

/** Schema the runner checks alias-exists results with. */
export const AliasExistsResultSchema = v.boolean("must be true or false");

/**
 * An envelope sender a hook may choose: "" (the null sender) or
 * `local@domain`, one word that fits in `MAIL FROM:<…>` (RFC 5321 section
 * 4.1.2): no white space, control characters or angle brackets, which
 * would end the path or the command line and start another.
 */
const SenderText = v.pipe(
  v.string("must be text"),
  v.maxLength(998),
  v.regex(
    // deno-lint-ignore no-control-regex -- control characters are what is refused
    /^(?:[^\s\x00-\x1f\x7f-\x9f<>]+@[^\s\x00-\x1f\x7f-\x9f<>@]+)?$/,
    'must be "" or an address local@domain without spaces, control characters or "<>"',
  ),
);

/**
 * The name of a virtual MTA, as the configuration's `virtual_mtas` names
 * them: letters, digits, `_`, `.` and `-`. No other name can be configured,
 * and one with a line break would write a line of its own into the hook's
 * log ("the hook chose virtual MTA …").
 */
const MtaName = v.pipe(
  v.string("new_mtaid must be text"),
  v.regex(/^[A-Za-z0-9_.\-]+$/, "new_mtaid must be a name of letters, digits, _ . -"),
);

/**
 * A domain name routes and connection limits are counted by: dot-separated
 * labels (RFC 1035 section 2.3.1 letters, digits and hyphens; U-labels may
 * be non-ASCII), or "" for none.
 */
const DomainText = v.pipe(
  v.string("must be text"),
  v.maxLength(253),
  v.regex(
    /^(?:[\p{L}\p{N}_](?:[\p{L}\p{N}_-]*[\p{L}\p{N}_])?(?:\.(?!$)|$))*$/u,
    "must be a domain name: labels of letters, digits and hyphens, separated by dots",
  ),
);

/** Schema of {@linkcode PreDeliveryAttemptInput} (for `postern hook run --input`). */
export const PreDeliveryAttemptInputSchema = v.strictObject({
  mtaid: v.optional(v.string(), "default"),
  sendid: v.optional(v.string(), ""),
  listid: v.optional(v.string(), ""),
  msguid: v.optional(v.string(), "0000000000000000"),
  injtime: v.optional(v.number(), 0),
  sender: v.string(),
  recipient: v.string(),
  is_first_attempt: v.optional(v.picklist([0, 1]), 1),
  mtaid_exists: v.optional(v.picklist([0, 1]), 1),
});

/** Schema the runner checks pre-delivery-attempt results with. */
export const PreDeliveryAttemptResultSchema = v.variant("action", [
  v.strictObject({
    action: v.literal("normal"),
    deliver_as_if_to_domain: v.optional(DomainText),
  }),
  v.strictObject({ action: v.literal("pause"), message: v.optional(ReplyText) }),
  v.strictObject({ action: v.literal("dump"), message: v.optional(ReplyText) }),
  v.strictObject({
    action: v.literal("new_mtaid"),
    new_mtaid: MtaName,
    deliver_as_if_to_domain: v.optional(DomainText),
  }),
  v.strictObject({
    action: v.literal("new_config"),
    new_mtaid: v.optional(MtaName),
    new_sender: v.optional(SenderText),
  }),
], 'must be { action: "normal" | "pause" | "dump" | "new_mtaid" | "new_config", … }');
