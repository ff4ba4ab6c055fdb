/**
 * What Postern decides at each step of an SMTP session, as async handlers
 * that return reply values. `listener.ts` plugs them into smtp-server
 * through the adapter.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import type { RecipientResolver } from "../aliases/mod.ts";
import { inNetworks, type Network, type SpfVerdict } from "../auth/mod.ts";
import { type HookRunner, postDataOutcome } from "../hooks/mod.ts";
import type { ClientInfo, Logger, MailLog } from "../log/mod.ts";
import {
  type Envelope,
  type FreeSpace,
  newQueueId,
  type Spool,
  type SpoolItem,
  type SpoolWriter,
} from "../queue/mod.ts";
import { type AuthDeps, authenticateAfterData, spfAtMailFrom } from "./authentication.ts";
import { HeaderFilter } from "./header_filter.ts";
import { hasDeliveredTo, headerRefusal } from "./header_guard.ts";
import { ourAuthenticationResults } from "./authres_claim.ts";
import {
  idHeaderFilter,
  missingHeaders,
  type OutboundIntake,
  signatureHead,
  type SubmittedHeaders,
} from "./outbound_headers.ts";
import type { ConnectionLimits } from "./connection_limits.ts";
import type { LoginChecker } from "./login.ts";
import type { RateLimiter, RateLimitSettings, RateRefusal } from "./rate_limits.ts";
import { senderRefusal } from "./submission.ts";
import { unsupportedParameter } from "./parameters.ts";
import { receiveMessage } from "./data.ts";
import { receivedHeader } from "./received.ts";
import { storageRefusal } from "./storage.ts";
import { checkRecipient } from "./recipient.ts";
import { mailboxExists, type MailboxLookup } from "./mailboxes.ts";
import type { DovecotAuth } from "../users/dovecot_auth.ts";
import { formatReply, Replies, reply, type SmtpReply } from "./reply.ts";
import { RefusalLog } from "./refusal_log.ts";
import type { SessionEvents } from "./server_class.ts";

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

/** The async handlers of one listener's sessions. */
export class Intake implements SessionEvents {
  #deps: IntakeDeps;
  /** Which refusals get a mail log line of their own (refusal_log.ts). */
  #refusals = new RefusalLog();
  /** The open transaction (queue ID, SPF verdict, policy), by session ID. */
  #transactions = new Map<
    string,
    { qid: string; spf: SpfVerdict | null; policy: IntakePolicy }
  >();

  /** Sessions whose connection rate the cluster's server is being asked about. */
  #asking = new Set<string>();

  /** Creates handlers over `deps`. */
  constructor(deps: IntakeDeps) {
    this.#deps = deps;
  }

  /** A client connected: apply the connection rate and connection limits. */
  connect(session: SMTPServerSession): Promise<SmtpReply | undefined> {
    const policy = this.#deps.policy();
    const ip = session.remoteAddress;
    if (this.#deps.rates && !inNetworks(ip, policy.trustedNetworks)) {
      const limited = this.#deps.rates.admitConnection(ip, policy.rateLimits);
      // The local limiter answers at once; only a fleet's asks its server.
      if (limited instanceof Promise) {
        this.#asking.add(session.id);
        return limited.then((refusal) => {
          // A client gone while the server was asked is not counted as open.
          if (!this.#asking.delete(session.id)) return undefined;
          return refusal ? this.#refuseConnection(session, refusal) : this.#admit(session);
        });
      }
      if (limited) return Promise.resolve(this.#refuseConnection(session, limited));
    }
    return Promise.resolve(this.#admit(session));
  }

  #refuseConnection(session: SMTPServerSession, limited: RateRefusal): SmtpReply {
    this.#reject(session, "connect", limited.reason, limited.reply);
    return limited.reply;
  }

  /** The connection limits, once the rate limit let the client in. */
  #admit(session: SMTPServerSession): SmtpReply | undefined {
    const ip = session.remoteAddress;
    const refusal = this.#deps.connections.admit(session.id, ip);
    if (refusal) {
      this.#reject(session, "connect", "too_many_connections", refusal);
      return refusal;
    }
    this.#deps.mailLog.connected(session.id, client(session));
    return undefined;
  }

  /** MAIL FROM: a new transaction, with its queue ID and SPF verdict. */
  async mailFrom(
    address: SMTPServerAddress,
    session: SMTPServerSession,
  ): Promise<SmtpReply | undefined> {
    // A MAIL FROM comes only outside a transaction (smtp-server answers 503
    // otherwise): one left here was refused, and is over.
    this.#transactions.delete(session.id);
    const parameter = unsupportedParameter("mail", address, {
      auth: authenticatedUser(session) !== undefined,
    });
    if (parameter) {
      const sender = address.address || "";
      this.#reject(
        session,
        "mail",
        "unsupported_parameter",
        parameter,
        undefined,
        undefined,
        sender,
      );
      return parameter;
    }
    const policy = this.#deps.policy();
    const transaction = { qid: newQueueId(), spf: null as SpfVerdict | null, policy };
    this.#transactions.set(session.id, transaction);
    this.#deps.mailLog.transaction();
    const ip = session.remoteAddress;
    const user = authenticatedUser(session);
    if (user !== undefined) {
      const refusal = senderRefusal(user, address.address || "");
      if (refusal) {
        this.#reject(session, "mail", "sender_not_owned", refusal, undefined, transaction.qid);
        this.#transactions.delete(session.id);
        return refusal;
      }
    }
    if (
      this.#deps.rates &&
      (authenticatedUser(session) !== undefined || !inNetworks(ip, policy.trustedNetworks))
    ) {
      const admitted = this.#deps.rates.admitMessage(
        ip,
        authenticatedUser(session),
        policy.rateLimits,
      );
      const limited = admitted instanceof Promise ? await admitted : admitted;
      if (limited) {
        this.#reject(session, "mail", limited.reason, limited.reply, undefined, transaction.qid);
        this.#transactions.delete(session.id);
        return limited.reply;
      }
    }
    // RFC 1870 section 6.1: no room now for the declared size plus the reserve.
    const storage = await storageRefusal(this.#deps.freeSpace, address, policy.queueMinfree);
    if (storage) {
      this.#reject(
        session,
        "mail",
        "insufficient_storage",
        storage,
        undefined,
        transaction.qid,
        address.address || "",
      );
      this.#transactions.delete(session.id);
      return storage;
    }
    if (!policy.auth) return undefined;
    const { verdict, refusal } = await spfAtMailFrom(policy.auth, {
      sender: address.address || "",
      ip: session.remoteAddress,
      helo: session.hostNameAppearsAs || "",
      authenticated: authenticatedUser(session) !== undefined,
    });
    transaction.spf = verdict;
    if (refusal) {
      this.#reject(
        session,
        "mail",
        refusal.reason,
        refusal.reply,
        undefined,
        transaction.qid,
        address.address || "",
      );
      return refusal.reply;
    }
    return undefined;
  }

  /** RCPT TO: only local recipients that exist, up to the limit. */
  async rcptTo(
    address: SMTPServerAddress,
    session: SMTPServerSession,
  ): Promise<SmtpReply | undefined> {
    const parameter = unsupportedParameter("rcpt", address, { auth: false });
    if (parameter) {
      this.#reject(session, "rcpt", "unsupported_parameter", parameter, address.address);
      return parameter;
    }
    const policy = this.#policyOf(session);
    if (session.envelope.rcptTo.length >= policy.maxRecipients) {
      // RFC 5321 section 4.5.3.1.10: 452 asks the client to send the rest
      // in another transaction.
      this.#reject(
        session,
        "rcpt",
        "too_many_recipients",
        Replies.tooManyRecipients,
        address.address,
      );
      return Replies.tooManyRecipients;
    }
    const resolver = policy.resolver;
    const checked = checkRecipient(address.address, resolver);
    // An authenticated user may send anywhere (RFC 6409 section 5.1).
    const refusal = checked?.reason === "relay_denied" && authenticatedUser(session) !== undefined
      ? undefined
      : checked;
    // Mailboxes delivered over LMTP are the store's to know (Dovecot's
    // userdb); a store that cannot answer makes the refusal temporary.
    let storeDown: { reason: string; reply: SmtpReply } | undefined;
    if (refusal?.reason === "no_such_user" && policy.mailboxes) {
      const exists = await mailboxExists(
        policy.mailboxes,
        resolver.normalize(address.address),
        (err) => this.#deps.logger.warn("mailbox lookup failed", { error: String(err) }),
      );
      if (exists === true) return undefined;
      if (exists !== false) storeDown = exists;
    }
    if (refusal?.reason === "no_such_user" && this.#deps.hooks?.has("alias-exists")) {
      // chasquid asks the alias-exists hook about addresses that are
      // neither users nor aliases in the files.
      const verdict = await this.#deps.hooks.aliasExists(resolver.normalize(address.address));
      if (verdict?.exists) return undefined;
    }
    if (storeDown) {
      this.#reject(session, "rcpt", storeDown.reason, storeDown.reply, address.address);
      return storeDown.reply;
    }
    if (refusal) {
      this.#reject(session, "rcpt", refusal.reason, refusal.reply, address.address);
      return refusal.reply;
    }
    return undefined;
  }

  /** DATA: stream into the spool, commit durably, then reply 250. */
  async data(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<SmtpReply> {
    const transaction = this.#transactions.get(session.id);
    const qid = transaction?.qid ?? newQueueId();
    const spf = transaction?.spf ?? null;
    const policy = transaction?.policy ?? this.#deps.policy();
    this.#transactions.delete(session.id);
    const now = this.#deps.now?.() ?? new Date();
    const mailFrom = session.envelope.mailFrom;
    const from = mailFrom ? mailFrom.address || "" : "";
    const to = session.envelope.rcptTo.map((r) => r.address);
    const smtputf8 = Boolean(mailFrom && mailFrom.args && mailFrom.args.SMTPUTF8);
    const envelope: Envelope = {
      v: 1,
      id: qid,
      from,
      to,
      received_at: now.toISOString(),
      client: {
        ip: session.remoteAddress,
        helo: session.hostNameAppearsAs || "",
        tls: session.secure,
      },
      smtputf8,
    };
    const header = receivedHeader({
      helo: envelope.client.helo,
      clientIp: session.remoteAddress,
      hostname: this.#deps.hostname,
      queueId: qid,
      tls: session.secure,
      smtputf8,
      esmtp: session.openingCommand === "EHLO",
      authenticated: authenticatedUser(session) !== undefined,
      recipients: to,
      date: now,
    });

    let writer;
    try {
      writer = await this.#deps.spool.receive(envelope);
    } catch (err) {
      for await (const _ of stream) { /* drain: smtp-server replies only after the end */ }
      return this.#failed(session, qid, err, envelope);
    }
    // RFC 8601 section 5: our own authserv-id in a field from outside is a forgery.
    const auth = policy.auth;
    // Mail from outside gets the RFC 8601 filter; submitted mail (the only
    // mail that is relayed) gives up its SendID and ListID and is signed.
    const submitted = authenticatedUser(session) !== undefined;
    const checkedClient = auth !== undefined && !submitted &&
      !inNetworks(session.remoteAddress, policy.trustedNetworks);
    const ids: SubmittedHeaders = {};
    const outbound = submitted ? policy.outbound : undefined;
    // RFC 8601 section 5: a submitting user is no trusted MTA either, so
    // submitted mail loses claims of our authserv-id too.
    const filter = checkedClient
      ? new HeaderFilter(ourAuthenticationResults(auth.hostname))
      : outbound
      ? idHeaderFilter(outbound, ids, ourAuthenticationResults(this.#deps.hostname))
      : undefined;
    const outcome = await receiveMessage(
      stream,
      writer,
      new TextEncoder().encode(header),
      policy.maxMessageSize,
      filter,
    );
    if (checkedClient && filter && filter.dropped > 0) {
      this.#deps.logger.warn("removed Authentication-Results fields that claimed our name", {
        qid,
        fields: filter.dropped,
      });
    }
    switch (outcome.kind) {
      case "too_big": {
        const r = Replies.messageTooBig(policy.maxMessageSize);
        this.#reject(session, "data", "message_too_big", r, undefined, qid, from);
        return r;
      }
      case "bad_header": {
        // Refused before anything read the header: mailauth (to verify or
        // sign) would take too long over it, or it hides fields behind a
        // bare CR. Nothing of it was stored (header_guard.ts).
        const { reason, reply: r } = headerRefusal(outcome.violation);
        this.#reject(session, "data", reason, r, undefined, qid, from);
        return r;
      }
      case "failed":
        return this.#failed(session, qid, outcome.error, envelope);
      case "interrupted":
        // The connection is gone: the reply goes nowhere, the log says why.
        this.#reject(session, "data", "interrupted", Replies.localError, undefined, qid, from);
        return Replies.localError;
      case "received":
        this.#deps.freeSpace?.consumed(outcome.bytes);
        break;
    }

    let item: SpoolItem;
    let results: Record<string, string> = {};
    try {
      const authenticated = await this.#authenticate(policy, session, writer, envelope, spf);
      if ("code" in authenticated) {
        await writer.abort();
        return authenticated;
      }
      results = authenticated.results;
      const checked = await this.#postData(policy, session, writer, envelope, spf);
      if ("code" in checked) {
        await writer.abort();
        return checked;
      }
      if (outbound) {
        writer.setIds(ids);
        await writer.prepend(missingHeaders(ids, qid, this.#deps.hostname, now, from));
      }
      if (checked.head) await writer.prepend(checked.head);
      // For local delivery's loop check (src/delivery/delivered_to.ts).
      writer.setDeliveredTo(
        outcome.deliveredTo || (checked.head !== undefined && hasDeliveredTo(checked.head)),
      );
      item = await writer.commit(
        outbound ? await signatureHead(outbound, writer, envelope) : undefined,
      );
    } catch (err) {
      await writer.abort();
      return this.#failed(session, qid, err, envelope);
    }
    this.#deps.mailLog.queued(
      qid,
      client(session),
      from,
      to,
      outcome.bytes,
      session.secure,
      results,
    );
    this.#deps.onQueued(item);
    return reply(250, "2.0.0", `Ok: queued as ${qid}`);
  }

  /**
   * DKIM, ARC and DMARC on the spooled message; their header fields (and
   * Received-SPF) are added at once, so the post-data hook sees them, as
   * chasquid's does.
   */
  async #authenticate(
    policy: IntakePolicy,
    session: SMTPServerSession,
    writer: SpoolWriter,
    envelope: Envelope,
    spf: SpfVerdict | null,
  ): Promise<{ results: Record<string, string> } | SmtpReply> {
    const auth = policy.auth;
    if (!auth) return { results: {} };
    const checked = await authenticateAfterData(auth, async () => ({
      ...await writer.readable(),
      read: () => writer.message(),
    }), {
      sender: envelope.from,
      ip: envelope.client.ip,
      helo: envelope.client.helo,
      spf,
      authenticated: authenticatedUser(session) !== undefined,
    });
    if (checked.refusal) {
      this.#reject(
        session,
        "data",
        checked.refusal.reason,
        checked.refusal.reply,
        undefined,
        envelope.id,
        envelope.from,
      );
      return checked.refusal.reply;
    }
    if (checked.head) await writer.prepend(new TextEncoder().encode(checked.head));
    return { results: checked.results };
  }

  /**
   * The post-data hook, run on the spooled message before it is queued
   * (chasquid runs it after DATA, before queue.Put). Returns the headers
   * to add, or the reply that refuses the message.
   */
  async #postData(
    policy: IntakePolicy,
    session: SMTPServerSession,
    writer: SpoolWriter,
    envelope: Envelope,
    spf: SpfVerdict | null,
  ): Promise<{ head: Uint8Array | undefined } | SmtpReply> {
    const hooks = this.#deps.hooks;
    if (!hooks?.has("post-data")) return { head: undefined };
    const at = envelope.from.lastIndexOf("@");
    const verdict = await hooks.postData({
      queueId: envelope.id,
      remoteAddr: envelope.client.ip,
      ehloDomain: envelope.client.helo.replace(/[^A-Za-z0-9.\-_:\[\]]/g, ""),
      mailFrom: envelope.from,
      rcptTo: envelope.to,
      // chasquid's AUTH_AS: the user of a completed AUTH (submission), else "".
      authAs: authenticatedUser(session) ?? "",
      onTls: envelope.client.tls,
      fromLocalDomain: at > 0 && policy.resolver.isLocalDomain(envelope.from.slice(at + 1)),
      spfPass: spf?.result === "pass",
    }, () => hookMessage(writer));
    if (!verdict) return { head: undefined };
    this.#deps.mailLog.hook(envelope.id, "post-data", postDataOutcome(verdict));
    if (verdict.kind === "refuse") {
      // chasquid: exit status 20 is permanent (554), anything else 451.
      const r = verdict.permanent
        ? reply(554, "5.7.1", verdict.text)
        : reply(451, "4.3.0", verdict.text);
      const reason = verdict.cause === "rejected"
        ? "post_data_reject"
        : verdict.cause === "deferred"
        ? "post_data_defer"
        : "post_data_failure";
      if (reason === "post_data_failure") {
        this.#deps.logger.warn("post-data hook failed; the message is refused for now", {
          qid: envelope.id,
          cause: verdict.cause,
        });
      }
      this.#reject(session, "data", reason, r, undefined, envelope.id, envelope.from);
      return r;
    }
    if (verdict.dropped.length > 0) {
      this.#deps.logger.warn("post-data hook returned invalid header lines; they were dropped", {
        qid: envelope.id,
        dropped: verdict.dropped.join(" | "),
      });
    }
    return { head: verdict.headers ? new TextEncoder().encode(verdict.headers) : undefined };
  }

  /**
   * AUTH on a submission listener: the user's address, or the reply that
   * refuses the login. Logged (the name tried, never the password) and
   * counted either way.
   */
  async login(
    auth: {
      method: string;
      username?: string | undefined;
      password?: string | null | undefined;
      authcid?: string | undefined;
      authzid?: string | undefined;
    },
    session: SMTPServerSession,
  ): Promise<{ user: string } | SmtpReply> {
    const policy = this.#deps.policy();
    const username = auth.username ?? "";
    if (!this.#deps.logins) {
      this.#deps.mailLog.login(
        session.id,
        client(session),
        username,
        "refused",
        "auth_unavailable",
      );
      return reply(454, "4.7.0", "Authentication is not available");
    }
    // RFC 4616 section 2: acting as another user (an authzid that is not
    // the authcid) is not something anyone is authorized for here.
    if (auth.authzid && auth.authcid && auth.authzid !== auth.authcid) {
      this.#deps.mailLog.login(
        session.id,
        client(session),
        username,
        "refused",
        "authzid_mismatch",
      );
      return reply(535, "5.7.8", "Authentication credentials invalid");
    }
    const result = await this.#deps.logins.check(
      { method: auth.method, username, password: auth.password ?? "", ip: session.remoteAddress },
      policy.resolver,
      policy.rateLimits.failedLoginsPerIpPerHour,
      policy.dovecot,
      (err) => this.#deps.logger.warn("Dovecot login check failed", { error: String(err) }),
    );
    this.#deps.mailLog.login(
      session.id,
      client(session),
      username,
      "user" in result ? "ok" : "refused",
      "user" in result ? undefined : result.reason,
    );
    return "user" in result ? result : result.refusal;
  }

  /** The policy of the session's open transaction, or the one in force. */
  #policyOf(session: SMTPServerSession): IntakePolicy {
    return this.#transactions.get(session.id)?.policy ?? this.#deps.policy();
  }

  /** The connection closed: forget its state, and sum up a flood of refusals. */
  close(session: SMTPServerSession): void {
    this.#asking.delete(session.id);
    this.#transactions.delete(session.id);
    this.#deps.connections.release(session.id);
    const summary = this.#refusals.close(session.id);
    if (summary) this.#deps.mailLog.sessionRefusals(session.id, client(session), summary);
  }

  /** The connection refused a command itself (bad bytes, a pipelined message). */
  refused(
    session: SMTPServerSession,
    stage: string,
    reason: string,
    r: SmtpReply,
    to?: string,
  ): void {
    this.#reject(session, stage, reason, r, to);
  }

  /** The session reached the error limit; its end-of-session line says so. */
  errorLimit(session: SMTPServerSession, errors: number, r: SmtpReply): void {
    this.#refusals.cut(session.id, errors, formatReply(r));
  }

  #failed(session: SMTPServerSession, qid: string, err: unknown, envelope: Envelope): SmtpReply {
    this.#deps.logger.error("cannot spool message", {
      qid,
      error: err instanceof Error ? err.message : String(err),
    });
    this.#reject(session, "data", "spool_error", Replies.localError, undefined, qid, envelope.from);
    return Replies.localError;
  }

  /**
   * A refusal's mail log line. `to` and `from` are bare addresses ("" for
   * the null sender); the line shows them in angle brackets, as every other
   * line does. `from` defaults to the session's MAIL FROM, if any.
   */
  #reject(
    session: SMTPServerSession,
    stage: string,
    reason: string,
    r: SmtpReply,
    to?: string,
    qid?: string,
    from?: string,
  ): void {
    const mailFrom = session.envelope?.mailFrom;
    const sender = from ?? (mailFrom ? mailFrom.address || "" : undefined);
    const ownLine = this.#refusals.note(session.id);
    this.#deps.mailLog.rejected(
      { session: session.id, qid: qid ?? this.#transactions.get(session.id)?.qid },
      client(session),
      stage,
      reason,
      formatReply(r),
      { from: sender === undefined ? undefined : `<${sender}>`, to: to && `<${to}>` },
      ownLine,
    );
  }
}

/**
 * The user the client authenticated as, if any. smtp-server sets
 * `session.user` to false after STARTTLS (RFC 3207 section 4.2), so only a
 * user name or an object with one counts.
 */
export function authenticatedUser(session: SMTPServerSession): string | undefined {
  const user: unknown = session.user;
  if (typeof user === "string" && user !== "") return user;
  if (typeof user === "object" && user !== null && "username" in user) {
    const name = (user as { username: unknown }).username;
    if (typeof name === "string" && name !== "") return name;
  }
  return undefined;
}

function client(session: SMTPServerSession): ClientInfo {
  return { ip: session.remoteAddress, helo: session.hostNameAppearsAs || undefined };
}

/**
 * The spooled message as the post-data hook reads it. The file is flushed
 * and opened only when the hook starts reading: a small message that no
 * hook reads stays in memory until its commit writes it once.
 */
async function* hookMessage(writer: SpoolWriter): AsyncGenerator<Uint8Array> {
  const { path, offset } = await writer.readable();
  const stream = createReadStream(path, { start: offset, highWaterMark: 64 * 1024 });
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } finally {
    stream.destroy();
  }
}
