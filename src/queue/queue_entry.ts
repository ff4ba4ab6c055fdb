/**
 * What the queue keeps of each item, and what it shows of one: the entry
 * it schedules, the administration's view of it, and the small helpers the
 * queue's attempts use (see queue.ts).
 *
 * @module
 */

import type { NotifiedRecipient } from "./courier.ts";
import type { DeliveryState } from "./records.ts";
import type { SpoolItem } from "./spool.ts";

/** One queued item, as the queue schedules it. */
export interface Entry {
  item: SpoolItem;
  dueAt: number;
  running: boolean;
  /** Set aside for this destination (see `destination_limits.ts`). */
  waitingOn?: string | undefined;
}

/** The recipients an attempt for `item` is for: those still pending. */
export function pendingAddresses(item: SpoolItem): string[] {
  return item.state.recipients.filter((r) => r.status === "pending").map((r) => r.address);
}

/** What the administration sees of a queued item. */
export interface QueueEntryView {
  item: SpoolItem;
  /** When the next attempt is due (milliseconds since the epoch). */
  dueAt: number;
  /** An attempt, or a hold, release or finish, is in progress now. */
  running: boolean;
  held: boolean;
}

/** The outcome of an administrative action on one item. */
export type AdminOutcome = "done" | "missing" | "busy";

/** What a bounce or delay notice says of a recipient. */
export function notified(rcpt: DeliveryState["recipients"][number]): NotifiedRecipient {
  return {
    address: rcpt.address,
    error: rcpt.last_error ?? "",
    status: rcpt.last_status,
    remoteMta: rcpt.remote_mta,
  };
}

/** The administration's view of an entry. */
export function view(entry: Entry): QueueEntryView {
  return {
    item: entry.item,
    dueAt: entry.dueAt,
    running: entry.running,
    held: entry.item.state.held === true,
  };
}

/** A time in the queue for a reader: hours, or minutes (seconds) below an hour (a minute). */
export function queuedFor(ms: number): string {
  if (ms >= 3_600_000) return `${Math.round(ms / 3_600_000)}h`;
  if (ms >= 60_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.max(0, Math.round(ms / 1000))}s`;
}
