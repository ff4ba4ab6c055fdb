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
export const HOOK_POINTS = [
  "post-data",
  "alias-resolve",
  "alias-exists",
  "pre-delivery-attempt",
] as const;

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
 * - `accept`: queue the message; `headers` (fields such as `X-Spam: no`, or
 *   a name → value record) are added at the top. Each entry adds one field
 *   at most: a line break in it is allowed only as folding (the next line
 *   starts with a space or tab). An entry that is not one valid field is
 *   dropped whole and logged.
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
 * aliases file. A pipe target's program must be in the hook's `allow.run`,
 * or the answer is refused and the delivery deferred.
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

/**
 * Input of the pre-delivery-attempt hook, called before every remote
 * delivery attempt. The keys are those of GreenArrow's hook; 1 and 0 stand
 * for yes and no, as there.
 */
export interface PreDeliveryAttemptInput {
  /** The virtual MTA chosen for the attempt (by a route, or "default"). */
  mtaid: string;
  /** SendID of the message (from its SendID header), "" when it has none. */
  sendid: string;
  /** ListID of the message, "" when it has none. */
  listid: string;
  /** The message's unique identifier: its queue ID. */
  msguid: string;
  /** When the message was injected, in seconds since the epoch. */
  injtime: number;
  /** Envelope sender (Return-Path), "" for the null sender. */
  sender: string;
  /** Envelope recipient. */
  recipient: string;
  /** 1 for the recipient's first attempt, else 0. */
  is_first_attempt: 0 | 1;
  /** 1 when the virtual MTA named by `mtaid` exists, else 0. */
  mtaid_exists: 0 | 1;
}

/**
 * A state object, the same for every call of one worker: it is lost when
 * the hook is reloaded (a change to its files or settings), when Postern
 * restarts, and when the worker is ended (a call that timed out, a crash,
 * too much memory or output); README "Hooks" lists each case.
 */
export type HookState = Record<string, unknown>;

/**
 * Result of the pre-delivery-attempt hook:
 *
 * - `normal`: deliver as planned.
 * - `pause`: defer this attempt (a temporary failure), with `message`.
 * - `dump`: give up on the recipient (a bounce), with `message`.
 * - `new_mtaid`: deliver through the virtual MTA `new_mtaid`.
 * - `new_config`: change `new_mtaid` and/or `new_sender` (the envelope sender:
 *   "" or one `local@domain` without spaces, control characters or `<>`).
 *
 * `deliver_as_if_to_domain`, with `normal` and `new_mtaid`, is the domain used
 * to pick a route and to count connections per destination instead of the
 * recipient's.
 */
export type PreDeliveryAttemptResult =
  | { action: "normal"; deliver_as_if_to_domain?: string }
  | { action: "pause"; message?: string }
  | { action: "dump"; message?: string }
  | { action: "new_mtaid"; new_mtaid: string; deliver_as_if_to_domain?: string }
  | { action: "new_config"; new_mtaid?: string; new_sender?: string };

/**
 * State shared by every node of a fleet (the `cluster` setting), kept in
 * its Redis or Valkey server and reached through Postern: the hook needs
 * no network grant. Keys are the hook's own (namespaced by hook point):
 * 1 to 200 printable ASCII characters without spaces; values of `set` are
 * text of at most 4096 characters; a `ttl` is whole seconds (0: none, at
 * most 31 days). A call rejects when Postern has no cluster or its server
 * does not answer (within `cluster.timeout`); unless the hook catches it,
 * that is a hook failure like any other.
 */
export interface SharedState {
  /**
   * Adds `by` (default 1) to the counter `key` and returns the new count.
   * A `ttl` starts when the key is created and is kept by later calls, so
   * `increment(k, 1, 3600)` counts within an hour from the first count.
   */
  increment(key: string, by?: number, ttl?: number): Promise<number>;
  /** The value of `key` (a counter's as text), or null when it has none. */
  get(key: string): Promise<string | null>;
  /** Sets `key` to `value`, expiring after `ttl` seconds (0: never). */
  set(key: string, value: string, ttl?: number): Promise<void>;
}

/** A pre-delivery-attempt hook module's default export. */
export type PreDeliveryAttemptHook = (
  input: PreDeliveryAttemptInput,
  state: HookState,
  shared: SharedState,
) => PreDeliveryAttemptResult | Promise<PreDeliveryAttemptResult>;
