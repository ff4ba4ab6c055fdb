/**
 * What intake reads and what its handlers share: the policy in force, the
 * daemon's services, the open transaction of a session, and the line that
 * logs a refusal. `session.ts` (the envelope) and `accept_message.ts` (the
 * DATA path) both work from these.
 *
 * @module
 */

import type { SMTPServerSession } from "smtp-server";
import type { RecipientResolver } from "../aliases/mod.ts";
import type { Network, SpfVerdict } from "../auth/mod.ts";
import type { HookRunner } from "../hooks/mod.ts";
import type { Logger, MailLog } from "../log/mod.ts";
import type { Envelope, FreeSpace, Spool, SpoolItem, SpoolWriter } from "../queue/mod.ts";
import type { DovecotAuth } from "../users/dovecot_auth.ts";
import type { AuthDeps } from "./authentication.ts";
import type { ConnectionLimits } from "./connection_limits.ts";
import type { LoginChecker } from "./login.ts";
import type { MailboxLookup } from "./mailboxes.ts";
import type { OutboundIntake } from "./outbound_headers.ts";
import type { RateLimiter, RateLimitSettings } from "./rate_limits.ts";
import type { SmtpReply } from "./reply.ts";

/**
 * The part of the policy in force that intake reads. A transaction keeps
 * the one in force at its MAIL FROM until it ends, so a reload never
 * changes the rules in the middle of a transaction.
 */
export interface IntakePolicy {
  /** The policy's epoch, for log lines. */
  epoch: number;
  maxMessageSize: number;
  maxRecipients: number;
  /** Bytes kept free on the spool's file system at MAIL FROM (queue_minfree). */
  queueMinfree: number;
  /** Local domains, users and aliases. */
  resolver: RecipientResolver;
  /** SPF at MAIL FROM and DKIM/DMARC after DATA; undefined: no checks. */
  auth?: AuthDeps | undefined;
  /** Clients exempt from the rate limits. */
  trustedNetworks: readonly Network[];
  rateLimits: RateLimitSettings;
  /** SendID/ListID headers and DKIM signing for mail that may leave. */
  outbound?: OutboundIntake | undefined;
  /** Dovecot's auth service (auth.dovecot), which checks logins instead of the users files. */
  dovecot?: DovecotAuth | undefined;
  /** The mail store's userdb, for recipients of LMTP domains (auth.dovecot_userdb). */
  mailboxes?: MailboxLookup | undefined;
}

/** What the session handlers need. */
export interface IntakeDeps {
  hostname: string;
  connections: ConnectionLimits;
  /** The policy in force now. */
  policy: () => IntakePolicy;
  /** Rate-limit counters; undefined: no rate limits. */
  rates?: RateLimiter | undefined;
  /** Checks AUTH on submission listeners. */
  logins?: LoginChecker | undefined;
  spool: Spool;
  /** Free space of the spool's file system; undefined: not checked. */
  freeSpace?: FreeSpace | undefined;
  /** Called once a message is durably spooled, before the 250 is sent. */
  onQueued: (item: SpoolItem) => void;
  mailLog: MailLog;
  logger: Logger;
  /** The hooks (post-data after DATA, alias-exists at RCPT), when configured. */
  hooks?: HookRunner | undefined;
  now?: () => Date;
}

/** A session's open transaction: its queue ID, SPF verdict and policy. */
export interface OpenTransaction {
  qid: string;
  /** A log line carried `qid` (a refusal): it is not handed to another transaction. */
  named?: boolean;
  spf: SpfVerdict | null;
  policy: IntakePolicy;
}

/**
 * Logs a refusal (Intake's, which counts the refusals of each session).
 * `to` and `from` are bare addresses ("" for the null sender); `from`
 * defaults to the session's MAIL FROM, `qid` to its open transaction's.
 */
export type RejectLine = (
  session: SMTPServerSession,
  stage: string,
  reason: string,
  r: SmtpReply,
  to?: string,
  qid?: string,
  from?: string,
) => void;

/** What the steps after DATA work with. */
export interface DataContext {
  deps: IntakeDeps;
  reject: RejectLine;
}

/** A message received into the spool, not yet committed, for the checks on it. */
export interface SpooledMessage {
  policy: IntakePolicy;
  session: SMTPServerSession;
  writer: SpoolWriter;
  envelope: Envelope;
  spf: SpfVerdict | null;
}
