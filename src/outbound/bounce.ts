/**
 * Bounces and delay warnings: builds the delivery status notification for
 * the sender and queues it like any other message, from the null sender
 * (RFC 5321 section 4.5.5), so that it is never bounced in turn.
 *
 * @module
 */

import type { Logger, MailLog } from "../log/mod.ts";
import {
  type Envelope,
  newQueueId,
  type NotifiedRecipient,
  type Notifier,
  type Spool,
  type SpoolItem,
} from "../queue/mod.ts";
import { buildDsn, statusOf, statusWithClass } from "./dsn.ts";

/** What the bouncer needs. */
export interface BouncerDeps {
  spool: Spool;
  /** Our host name (Reporting-MTA). */
  hostname: () => string;
  /** When the notification is queued. */
  onQueued: (item: SpoolItem) => void;
  mailLog: MailLog;
  logger: Logger;
  /** How long messages may stay queued, for "Will-Retry-Until". */
  maxQueueLifetimeMs: () => number;
  now?: () => number;
}

/** Queues delivery status notifications. */
export class Bouncer implements Notifier {
  #deps: BouncerDeps;

  /** Creates the bouncer. */
  constructor(deps: BouncerDeps) {
    this.#deps = deps;
  }

  /**
   * Queues a notification to `item`'s sender about `recipients`. Nothing is
   * sent for the null sender or for a notification itself (RFC 3464
   * section 2: a DSN is never sent about a DSN).
   */
  async notify(
    item: SpoolItem,
    kind: "failed" | "delayed",
    recipients: NotifiedRecipient[],
  ): Promise<void> {
    const original = item.envelope;
    if (original.from === "" || original.dsn === true || recipients.length === 0) return;
    const now = new Date(this.#deps.now?.() ?? Date.now());
    const arrival = new Date(original.received_at);
    const message = await buildDsn({
      reportingMta: this.#deps.hostname(),
      queueId: original.id,
      originalSender: original.from,
      arrivalDate: arrival,
      now,
      recipients: recipients.map((r) => ({
        address: r.address,
        action: kind,
        status: r.status === undefined
          ? statusOf(publicText(r.error), kind === "failed")
          : statusWithClass(r.status, kind === "failed"),
        ...(r.error !== "" ? { diagnostic: diagnosticOf(r.error) } : {}),
        ...(r.remoteMta !== undefined ? { remoteMta: r.remoteMta } : {}),
        lastAttemptAt: now,
        ...(kind === "delayed"
          ? { willRetryUntil: new Date(arrival.getTime() + this.#deps.maxQueueLifetimeMs()) }
          : {}),
      })),
      original: this.#deps.spool.openMessage(item),
    });
    const envelope: Envelope = {
      v: 1,
      id: newQueueId(now.getTime()),
      from: "",
      to: [original.from],
      received_at: now.toISOString(),
      client: { ip: "127.0.0.1", helo: this.#deps.hostname(), tls: false },
      smtputf8: original.smtputf8,
      dsn: true,
    };
    const writer = await this.#deps.spool.receive(envelope);
    try {
      await writer.write(message);
      const queued = await writer.commit();
      this.#deps.mailLog.bounced(original.id, envelope.id, kind, original.from);
      this.#deps.onQueued(queued);
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }
}

/**
 * The remote server's own reply when the error quotes one (RFC 3464
 * section 2.3.6: Diagnostic-Code carries what the remote MTA said), else
 * our description; never what {@linkcode privateDetail} marked.
 */
function diagnosticOf(error: string): string {
  const text = publicText(error);
  // An alias's report names several outcomes: all of them, in our words.
  if (text.includes(PARTLY_DELIVERED)) return text;
  return /\bsaid: ([45]\d\d[ -].*)$/s.exec(text)?.[1] ?? text;
}

/**
 * How the error of an address begins when the message reached some of its
 * destinations (an alias) and not the others; the report keeps all of it.
 */
export const PARTLY_DELIVERED = "partly delivered";

/** How {@linkcode privateDetail} marks its text, and how {@linkcode publicText} finds it. */
const PRIVATE_OPEN = " [private: ";
const PRIVATE = / \[private: [^\]]*\]/g;

/**
 * Marks `detail` as for the mail log and the queue only, to follow the
 * public part of a delivery error: bounces and delay warnings leave it out
 * ({@linkcode publicText}). Local delivery puts there what a sender outside
 * has no business reading (RFC 3464 section 6.2 leaves to the reporting MTA
 * what it discloses): the data directory's path, a pipe's command line and
 * what it printed. Square brackets in `detail` become parentheses, so that
 * the mark ends where it should.
 */
export function privateDetail(detail: string): string {
  return `${PRIVATE_OPEN}${detail.replace(/\[/g, "(").replace(/\]/g, ")")}]`;
}

/** `error` without the parts {@linkcode privateDetail} marked: what a DSN may say. */
export function publicText(error: string): string {
  return error.replace(PRIVATE, "");
}
