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

/** The hook points, named as the files that implement them. */
export const HOOK_POINTS = ["post-data", "alias-resolve", "alias-exists"] as const;

/** One of {@linkcode HOOK_POINTS}. */
export type HookPoint = typeof HOOK_POINTS[number];

/**
 * Input of the post-data hook: the SMTP transaction after DATA, before the
 * message is queued. The fields match chasquid's environment variables.
 */
export interface PostDataInput {
  /** The queue ID the message will have if accepted. */
  queueId: string;
  /** Client IP address (`REMOTE_ADDR`). */
  remoteAddr: string;
  /** The client's EHLO/HELO name, reduced to safe characters (`EHLO_DOMAIN`). */
  ehloDomain: string;
  /** Envelope sender, "" for the null sender (`MAIL_FROM`). */
  mailFrom: string;
  /** Envelope recipients (`RCPT_TO`). */
  rcptTo: string[];
  /** The authenticated user, "" when the client did not authenticate (`AUTH_AS`). */
  authAs: string;
  /** The session is encrypted (`ON_TLS`). */
  onTls: boolean;
  /** The sender's domain is one of ours (`FROM_LOCAL_DOMAIN`). */
  fromLocalDomain: boolean;
  /** SPF gave "pass" for the sender (`SPF_PASS`). */
  spfPass: boolean;
}

/** What a module post-data hook receives: {@linkcode PostDataInput} and the message. */
export interface PostDataCall extends PostDataInput {
  /**
   * The message as received, with the Received header on top, CRLF line
   * endings. Streamed on demand: a hook that does not read it costs nothing.
   */
  message: ReadableStream<Uint8Array>;
}

/**
 * Result of the post-data hook. Returning nothing accepts the message
 * unchanged.
 *
 * - `accept`: queue the message; `headers` (lines such as `X-Spam: no`, or
 *   a name → value record) are added at the top. Invalid lines are dropped
 *   and logged.
 * - `reject`: refuse permanently (554 5.7.1), `message` is the reply text.
 * - `defer`: refuse temporarily (451 4.3.0), the client retries later.
 */
export type PostDataResult =
  | void
  | undefined
  | { action: "accept"; headers?: string[] | Record<string, string> }
  | { action: "reject"; message: string }
  | { action: "defer"; message: string };

/** Input of the alias-resolve and alias-exists hooks. */
export interface AliasInput {
  /** The address, normalized: lower case, without suffix and dropped characters. */
  address: string;
}

/**
 * Result of the alias-resolve hook: the right-hand side of an aliases line
 * (`"a@x, b@y"` or `"| command args"`), a list of such targets, or nothing
 * when the address is not an alias. The targets are added to those of the
 * aliases file.
 */
export type AliasResolveResult = string | string[] | null | undefined | void;

/** Result of the alias-exists hook: true when the address accepts mail. */
export type AliasExistsResult = boolean;

/** A post-data hook module's default export. */
export type PostDataHook = (input: PostDataCall) => PostDataResult | Promise<PostDataResult>;

/** An alias-resolve hook module's default export. */
export type AliasResolveHook = (
  input: AliasInput,
) => AliasResolveResult | Promise<AliasResolveResult>;

/** An alias-exists hook module's default export. */
export type AliasExistsHook = (
  input: AliasInput,
) => AliasExistsResult | Promise<AliasExistsResult>;

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
