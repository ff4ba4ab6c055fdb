/**
 * The mail log: one line per mail event, with the queue ID, in a stable
 * `key=value` form that can be grepped by queue ID. One method per event, as
 * chasquid's maillog does, so that call sites stay short and the format is
 * decided in one place. Every event also bumps its outcome counter.
 *
 * Message bodies and secrets never reach this module.
 *
 * @module
 */

import type { Counters } from "./counters.ts";
import { formatFields, type LogFields } from "./format.ts";
import type { LogSink } from "./logger.ts";

/** What identifies the client in mail log lines. */
export interface ClientInfo {
  /** The client's IP address. */
  ip: string;
  /** The HELO/EHLO name, once given. */
  helo?: string | undefined;
}

/** Writes mail events. */
export class MailLog {
  #sink: LogSink;
  #counters: Counters;
  #clock: () => Date;

  /** Creates a mail log writing to `sink` and counting into `counters`. */
  constructor(sink: LogSink, counters: Counters, clock: () => Date = () => new Date()) {
    this.#sink = sink;
    this.#counters = counters;
    this.#clock = clock;
  }

  /** A listener is ready to accept connections. */
  listening(address: string): void {
    this.#line({ event: "listening", addr: address });
  }

  /**
   * The open file limit is below what the configuration may need at once:
   * `smtp.max_connections` (`configured`) is `effective` for now.
   */
  descriptorLimit(limit: number, needed: number, configured: number, effective: number): void {
    this.#line({
      event: "descriptor_limit",
      limit,
      needed,
      setting: "smtp.max_connections",
      configured,
      effective,
    });
  }

  /**
   * A listener that stopped accepting connections was closed and listens
   * again on the same address (`reason`: why it was found stopped).
   */
  listenerRestarted(address: string, reason: string): void {
    this.#counters.inc("smtp_listener_restarts_total");
    this.#line({ event: "listener_restarted", addr: address, reason });
  }

  /**
   * A hook answered for a message (post-data: accept, reject, defer or
   * failure). The hook_calls counter is kept by the hook runner.
   */
  hook(qid: string, hook: string, outcome: string, fields: LogFields = {}): void {
    this.#line({ qid, event: "hook", hook, outcome, ...fields });
  }

  /** A transaction started (MAIL FROM); counted, not logged: its outcome is. */
  transaction(): void {
    this.#counters.inc("smtp_transactions_total");
  }

  /** An AUTH attempt: the name tried (never the password) and how it ended. */
  login(
    session: string,
    client: ClientInfo,
    user: string,
    result: "ok" | "refused",
    reason?: string,
  ): void {
    this.#counters.inc("smtp_logins_total", { result, ...(reason ? { reason } : {}) });
    this.#line({ session, event: "login", client: client.ip, user, result, reason });
  }

  /** A client connected. */
  connected(session: string, client: ClientInfo): void {
    this.#counters.inc("smtp_connections_total");
    this.#line({ session, event: "connect", client: client.ip });
  }

  /**
   * A command or message was refused; `reply` is the full reply sent. With
   * `ownLine` false it is counted only, and summed up at the end of the
   * session ({@linkcode MailLog.sessionRefusals}).
   */
  rejected(
    ids: { session: string; qid?: string | undefined },
    client: ClientInfo,
    stage: string,
    reason: string,
    reply: string,
    envelope: { from?: string | undefined; to?: string | undefined } = {},
    ownLine = true,
  ): void {
    this.#counters.inc("smtp_rejected_total", { stage, reason });
    if (!ownLine) return;
    this.#line({
      qid: ids.qid,
      session: ids.session,
      event: "rejected",
      stage,
      reason,
      client: client.ip,
      helo: client.helo,
      from: envelope.from,
      to: envelope.to,
      reply,
    });
  }

  /**
   * A session ended that had more refusals than got lines of their own, or
   * that was cut off at the error limit: one line with the counts (and the
   * 421 it got).
   */
  sessionRefusals(
    session: string,
    client: ClientInfo,
    summary: { rejected: number; unlogged: number; cut?: { errors: number; reply: string } },
  ): void {
    if (summary.cut) {
      this.#counters.inc("smtp_rejected_total", { stage: "session", reason: "too_many_errors" });
    }
    this.#line({
      session,
      event: "session_refusals",
      client: client.ip,
      helo: client.helo,
      rejected: summary.rejected,
      unlogged: summary.unlogged,
      reason: summary.cut ? "too_many_errors" : undefined,
      errors: summary.cut?.errors,
      reply: summary.cut?.reply,
    });
  }

  /** A message was spooled durably and acknowledged with 250. */
  queued(
    qid: string,
    client: ClientInfo,
    from: string,
    to: readonly string[],
    size: number,
    tls: boolean,
    auth: Readonly<Record<string, string>> = {},
  ): void {
    this.#counters.inc("smtp_messages_accepted_total");
    for (const [method, result] of Object.entries(auth)) {
      for (const one of result.split(",")) {
        this.#counters.inc("auth_results_total", { method, result: one });
      }
    }
    this.#line({
      qid,
      event: "queued",
      client: client.ip,
      helo: client.helo,
      from: `<${from}>`,
      to: to.map((t) => `<${t}>`).join(","),
      size,
      tls,
      ...auth,
    });
  }

  /** A queued item was found in the spool at start-up. */
  recovered(qid: string, pending: number): void {
    this.#counters.inc("queue_recovered_total");
    this.#line({ qid, event: "recovered", pending });
  }

  /** A spool file failed validation and was moved aside. */
  quarantined(file: string, reason: string): void {
    this.#counters.inc("queue_quarantined_total");
    this.#line({ event: "quarantined", file, reason });
  }

  /**
   * A message still arriving when the server stopped (its spool file never
   * sealed, so never acknowledged) was removed at start-up.
   */
  unfinished(qid: string): void {
    this.#counters.inc("queue_unfinished_removed_total");
    this.#line({ qid, event: "unfinished", action: "removed", reason: "never acknowledged" });
  }

  /** One delivery attempt to one recipient finished. */
  delivery(
    qid: string,
    rcpt: string,
    result: "sent" | "deferred" | "failed",
    detail: LogFields,
  ): void {
    this.#counters.inc("deliveries_total", { result });
    this.#line({ qid, event: "delivery", to: `<${rcpt}>`, result, ...detail });
  }

  /**
   * A delivery status notification about `qid` was queued as `dsnQid` for
   * `sender`: a bounce ("failed") or a delay warning ("delayed").
   */
  bounced(qid: string, dsnQid: string, kind: "failed" | "delayed", sender: string): void {
    this.#counters.inc("dsn_total", { kind });
    this.#line({ qid, event: "dsn", kind, dsn_qid: dsnQid, to: `<${sender}>` });
  }

  /** Every recipient of an item is final; the item left the queue. */
  completed(qid: string, sent: number, failed: number): void {
    this.#counters.inc("queue_completed_total");
    this.#line({ qid, event: "completed", sent, failed });
  }

  #line(fields: LogFields): void {
    this.#sink(`ts=${this.#clock().toISOString()} ${formatFields(fields)}\n`);
  }
}
