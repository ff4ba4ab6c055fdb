/**
 * The hook SDK's types: what Postern passes to each TypeScript hook and
 * what a hook may return. This file imports nothing, so that a hook can
 * be type-checked anywhere; `postern check` supplies it to the hooks it
 * checks as `mod.ts` next to them (and one folder up, as the examples
 * import it), and `mod.ts` re-exports it with the result schemas.
 *
 * @module
 */

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
