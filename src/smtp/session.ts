/**
 * What Postern decides at each step of an SMTP session, as async handlers
 * that return reply values: the connection limits, MAIL FROM, RCPT TO and
 * AUTH here, the DATA path in `accept_message.ts`. `listener.ts` plugs
 * them into smtp-server through the adapter.
 *
 * @module
 */

import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import { inNetworks } from "../auth/mod.ts";
import { newQueueId } from "../queue/mod.ts";
import { acceptMessage } from "./accept_message.ts";
import { spfAtMailFrom } from "./authentication.ts";
import type {
  DataContext,
  IntakeDeps,
  IntakePolicy,
  OpenTransaction,
  RejectLine,
} from "./intake_deps.ts";
import type { RateRefusal } from "./rate_limits.ts";
import { senderRefusal } from "./submission.ts";
import { offeredIn, unsupportedParameter } from "./parameters.ts";
import { storageRefusal } from "./storage.ts";
import { checkRecipient } from "./recipient.ts";
import { mailboxExists } from "./mailboxes.ts";
import { formatReply, Replies, reply, type SmtpReply } from "./reply.ts";
import { RefusalLog } from "./refusal_log.ts";
import type { SessionEvents } from "./server_class.ts";
import { authenticatedUser, client } from "./session_client.ts";

/** The async handlers of one listener's sessions. */
export class Intake implements SessionEvents {
  #deps: IntakeDeps;
  /** Which refusals get a mail log line of their own (refusal_log.ts). */
  #refusals = new RefusalLog();
  /** The open transaction (queue ID, SPF verdict, policy), by session ID. */
  #transactions = new Map<string, OpenTransaction>();
  /** What the DATA path works with: the deps, and refusals logged here. */
  #data: DataContext;

  /** Sessions whose connection rate the cluster's server is being asked about. */
  #asking = new Set<string>();

  /** Creates handlers over `deps`. */
  constructor(deps: IntakeDeps) {
    this.#deps = deps;
    this.#data = { deps, reject: this.#reject };
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
    this.#endTransaction(session.id);
    const parameter = unsupportedParameter("mail", address, offeredIn(session));
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
    const transaction: OpenTransaction = { qid: newQueueId(), spf: null, policy };
    this.#transactions.set(session.id, transaction);
    this.#deps.mailLog.transaction();
    const ip = session.remoteAddress;
    const user = authenticatedUser(session);
    if (user !== undefined) {
      const refusal = senderRefusal(user, address.address || "");
      if (refusal) {
        this.#reject(session, "mail", "sender_not_owned", refusal, undefined, transaction.qid);
        this.#endTransaction(session.id);
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
        this.#endTransaction(session.id);
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
      this.#endTransaction(session.id);
      return storage;
    }
    if (!policy.auth) return this.#admitted(session.id, transaction);
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
    return this.#admitted(session.id, transaction);
  }

  /**
   * MAIL FROM accepted: the transaction takes its queue ID from the spool,
   * with a file made for it ahead of time when one is ready (see
   * src/queue/spare_files.ts). Until now it had an ID of its own, for the
   * refusal log lines: a refused MAIL never holds a spare file.
   */
  #admitted(sessionId: string, transaction: OpenTransaction): undefined {
    // Unless the connection closed while the checks ran: then nothing
    // would give the spare back.
    if (this.#transactions.get(sessionId) === transaction) {
      transaction.qid = this.#deps.spool.newId();
    }
    return undefined;
  }

  /**
   * The session's transaction is over: forgotten, its spare file given
   * back (for another transaction when no log line carried its ID).
   */
  #endTransaction(sessionId: string): void {
    const transaction = this.#transactions.get(sessionId);
    if (!transaction) return;
    this.#transactions.delete(sessionId);
    this.#deps.spool.releaseId(transaction.qid, !transaction.named);
  }

  /** RCPT TO: only local recipients that exist, up to the limit. */
  async rcptTo(
    address: SMTPServerAddress,
    session: SMTPServerSession,
  ): Promise<SmtpReply | undefined> {
    const parameter = unsupportedParameter("rcpt", address, offeredIn(session));
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
    const open: OpenTransaction = {
      qid: transaction?.qid ?? newQueueId(),
      spf: transaction?.spf ?? null,
      policy: transaction?.policy ?? this.#deps.policy(),
    };
    this.#transactions.delete(session.id);
    try {
      return await acceptMessage(this.#data, stream, session, open);
    } finally {
      // Taken by the spool when the message was received; else given back.
      this.#deps.spool.releaseId(open.qid);
    }
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

  /** smtp-server reset the session: an open transaction ended without a message. */
  reset(session: SMTPServerSession): void {
    this.#endTransaction(session.id);
  }

  /** The connection closed: forget its state, and sum up a flood of refusals. */
  close(session: SMTPServerSession): void {
    this.#asking.delete(session.id);
    this.#endTransaction(session.id);
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

  /**
   * A refusal's mail log line. `to` and `from` are bare addresses ("" for
   * the null sender); the line shows them in angle brackets, as every other
   * line does. `from` defaults to the session's MAIL FROM, if any.
   */
  #reject: RejectLine = (session, stage, reason, r, to, qid, from) => {
    const open = this.#transactions.get(session.id);
    // Its queue ID is in the log now: never another transaction's.
    if (open && (qid === undefined || qid === open.qid)) open.named = true;
    const mailFrom = session.envelope?.mailFrom;
    const sender = from ?? (mailFrom ? mailFrom.address || "" : undefined);
    const ownLine = this.#refusals.note(session.id);
    this.#deps.mailLog.rejected(
      { session: session.id, qid: qid ?? open?.qid },
      client(session),
      stage,
      reason,
      formatReply(r),
      { from: sender === undefined ? undefined : `<${sender}>`, to: to && `<${to}>` },
      ownLine,
    );
  };
}
