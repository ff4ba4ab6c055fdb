/**
 * What the queue and its couriers agree on: a delivery attempt's
 * recipients and results, the courier that makes it, the notifier that
 * tells senders of failures and delays, and the queue's settings.
 *
 * @module
 */

import type { SpoolItem } from "./spool.ts";

/** The outcome of delivering one message to one envelope recipient. */
export type DeliveryResult =
  | { status: "sent"; detail: string }
  | {
    status: "deferred" | "failed";
    error: string;
    /**
     * Of a deferred recipient that an alias expands to several targets:
     * the targets delivered in this attempt, which the queue keeps and
     * hands back in {@linkcode RecipientRef.done} so the retry skips them.
     * A pipe run twice or a forward sent twice is a duplicate message.
     */
    done?: string[];
    /** Enhanced status code (RFC 3463) for a bounce; else one is derived from `error`. */
    dsnStatus?: string;
    /** The remote host that answered, for a bounce. */
    remoteMta?: string;
  };

/** One envelope recipient of a delivery attempt. */
export interface RecipientRef {
  address: string;
  /** Position in the envelope (names the Maildir file, so retries do not duplicate). */
  index: number;
  /** Attempts made before this one. */
  attempts: number;
  /** Targets delivered by earlier attempts (see {@linkcode DeliveryResult}). */
  done?: readonly string[];
}

/** Something that delivers messages: local (Maildir, pipes), remote, or both. */
export interface Courier {
  /**
   * Delivers `item` to `recipients`; one result per recipient, in order.
   * `open` streams the message; it may be called once per destination.
   * Never throws: every failure is a result that says whether it is permanent.
   */
  deliver(
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]>;
  /**
   * The remote destinations (lower-case domains) an attempt for these
   * recipients would send to; none for local ones. The queue uses them to
   * keep one slow destination from taking every delivery slot.
   */
  destinationsOf?(recipients: readonly string[]): string[];
}

/** A recipient the sender is told about. */
export interface NotifiedRecipient {
  address: string;
  error: string;
  status: string | undefined;
  remoteMta: string | undefined;
}

/**
 * Tells senders about failed and delayed recipients (delivery status
 * notifications). Resolves once the notification is safely queued.
 */
export interface Notifier {
  notify(
    item: SpoolItem,
    kind: "failed" | "delayed",
    recipients: NotifiedRecipient[],
  ): Promise<void>;
}

/** Retry and concurrency settings. */
export interface QueueOptions {
  concurrency: number;
  /**
   * Attempts in flight that send to one remote destination; unset, no
   * limit but `concurrency` (see `destination_limits.ts`).
   */
  destinationConcurrency?: number;
  retryInitialMs: number;
  retryMaxMs: number;
  maxQueueLifetimeMs: number;
  /** Warn the sender once a message has waited this long; 0 never. */
  delayWarningMs?: number;
}
