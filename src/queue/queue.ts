/**
 * The delivery queue: hands spooled items to a courier, keeps per-recipient
 * state, retries temporary failures with backoff until the item's lifetime
 * runs out, and removes items once every recipient is final.
 *
 * @module
 */

import type { Logger, MailLog } from "../log/mod.ts";
import { DestinationLimits, type Verdict } from "./destination_limits.ts";
import { DueHeap } from "./due_heap.ts";
import { copyState, type DeliveryState } from "./records.ts";
import {
  type AdminOutcome,
  type Entry,
  notified,
  pendingAddresses,
  queuedFor,
  type QueueEntryView,
  view,
} from "./queue_entry.ts";
import type { Spool, SpoolItem } from "./spool.ts";
import type { Courier, NotifiedRecipient, Notifier, QueueOptions } from "./courier.ts";
export type { AdminOutcome, QueueEntryView } from "./queue_entry.ts";

export type {
  Courier,
  DeliveryResult,
  NotifiedRecipient,
  Notifier,
  QueueOptions,
  RecipientRef,
} from "./courier.ts";

/** Schedules delivery attempts for spooled items. */
export class Queue {
  #spool: Spool;
  #courier: Courier;
  #mailLog: MailLog;
  #logger: Logger;
  #options: QueueOptions;
  #now: () => number;
  #random: () => number;
  #entries = new Map<string, Entry>();
  #due = new DueHeap<Entry>();
  #active = 0;
  #limits = new DestinationLimits<Entry>(() => this.#options.destinationConcurrency);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #idle: Array<() => void> = [];
  /** Holds, releases and finishes in progress, which stop() waits for too. */
  #changing = 0;
  #notifier: Notifier | undefined;

  /** Creates a queue; `now` and `random` may be injected by tests. */
  constructor(
    spool: Spool,
    courier: Courier,
    mailLog: MailLog,
    logger: Logger,
    options: QueueOptions,
    now: () => number = Date.now,
    random: () => number = Math.random,
  ) {
    this.#spool = spool;
    this.#courier = courier;
    this.#mailLog = mailLog;
    this.#logger = logger;
    this.#options = options;
    this.#now = now;
    this.#random = random;
  }

  /** Sets who tells senders about failures (bounces) and delays. */
  setNotifier(notifier: Notifier): void {
    this.#notifier = notifier;
  }

  /**
   * Changes retry and concurrency settings (a policy reload). Retries
   * already scheduled keep their time; a higher concurrency, total or per
   * destination, starts waiting items at once.
   */
  setOptions(options: QueueOptions): void {
    this.#options = options;
    // A higher (or no) per-destination limit has room for waiting items.
    this.#requeue(this.#limits.releaseAll(this.#judge, this.#destinationsOf));
    if (!this.#stopped) this.#pump();
  }

  /** Number of items in the queue. */
  get size(): number {
    return this.#entries.size;
  }

  /** Every item with its next attempt time and whether one is running now. */
  list(): QueueEntryView[] {
    return [...this.#entries.values()].map((entry) => view(entry));
  }

  /** One item, or undefined when it is not (or no longer) queued. */
  get(id: string): QueueEntryView | undefined {
    const entry = this.#entries.get(id);
    return entry ? view(entry) : undefined;
  }

  /** Makes an item due now (a held one stays held). */
  retryNow(id: string): AdminOutcome {
    const entry = this.#entries.get(id);
    if (!entry) return "missing";
    if (entry.running) return "busy";
    // Set aside for a destination at its limit, it is due already and
    // starts as soon as that destination has room.
    if (entry.waitingOn !== undefined) return "done";
    entry.dueAt = this.#now();
    this.#due.push(entry);
    this.#pump();
    return "done";
  }

  /**
   * Holds or releases an item. A held item gets no attempt until it is
   * released; the hold is kept in the spool, so it survives a restart.
   */
  async setHeld(id: string, held: boolean): Promise<AdminOutcome> {
    const entry = this.#entries.get(id);
    if (!entry) return "missing";
    if (entry.running) return "busy";
    this.#changing++;
    let saved = false;
    try {
      // Busy while the state is saved, as during an attempt. An attempt
      // started meanwhile would end by writing its own copy of the state,
      // from before the hold, over it (the hold answered "done" would be
      // gone); or this save, ending after the attempt, would put back as
      // pending the recipients that attempt delivered, and they would get
      // the message again. A second hold or release meanwhile is "busy".
      entry.running = true;
      const state: DeliveryState = copyState(entry.item.state);
      if (held) state.held = true;
      else delete state.held;
      await this.#spool.saveState(id, state);
      entry.item.state = state;
      saved = true;
    } finally {
      try {
        entry.running = false;
        if (entry.item.state.held) this.#limits.forget(entry);
        else if (entry.waitingOn === undefined) {
          // Released, it is due now; not held after all (the save failed),
          // it keeps its time. Either way a new heap record: a pump while
          // the entry was busy dropped the old one as stale.
          if (saved) entry.dueAt = this.#now();
          this.#due.push(entry);
        }
        this.#pump();
      } finally {
        // Whatever happened above: a stop() must not wait for this for ever.
        this.#changed();
      }
    }
    return "done";
  }

  /**
   * Ends an item at once. `bounce` marks its pending recipients failed and
   * sends the sender a bounce; `delete` drops it without a trace but the
   * mail log line.
   */
  async finish(id: string, how: "bounce" | "delete", reason: string): Promise<AdminOutcome> {
    const entry = this.#entries.get(id);
    if (!entry) return "missing";
    if (entry.running) return "busy";
    this.#changing++;
    try {
      return await this.#finish(entry, how, reason);
    } finally {
      this.#changed();
    }
  }

  async #finish(entry: Entry, how: "bounce" | "delete", reason: string): Promise<AdminOutcome> {
    const id = entry.item.envelope.id;
    entry.running = true;
    this.#limits.forget(entry);
    const { recipients } = entry.item.state;
    const failed: NotifiedRecipient[] = [];
    for (const rcpt of recipients) {
      if (rcpt.status !== "pending") continue;
      this.#mailLog.delivery(id, rcpt.address, "failed", { error: `${how}: ${reason}` });
      failed.push({ address: rcpt.address, error: reason, status: "5.0.0", remoteMta: undefined });
    }
    try {
      if (how === "bounce" && failed.length > 0) {
        await this.#notifier?.notify(entry.item, "failed", failed);
      }
    } catch (err) {
      // The bounce could not be queued: the item stays, scheduled as it was.
      entry.running = false;
      this.#due.push(entry);
      this.#pump();
      throw err;
    }
    entry.running = false;
    this.#entries.delete(id);
    await this.#spool.remove(id);
    const sent = recipients.filter((r) => r.status === "sent").length;
    this.#mailLog.completed(id, sent, recipients.length - sent);
    return "done";
  }

  /** Adds an item; its first attempt is due now unless its state says later. */
  add(item: SpoolItem): void {
    const next = item.state.next_attempt_at;
    const dueAt = next === undefined ? this.#now() : Date.parse(next);
    const entry = { item, dueAt, running: false };
    this.#entries.set(item.envelope.id, entry);
    this.#due.push(entry);
    this.#pump();
  }

  /**
   * Stops starting attempts and waits for those in flight to finish, and
   * for holds, releases and finishes in progress: the spool is closed next.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#active > 0 || this.#changing > 0) {
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
  }

  /** An administrator's change ended: wakes stop() once nothing is left. */
  #changed(): void {
    this.#changing--;
    this.#wakeIdle();
  }

  #wakeIdle(): void {
    if (this.#active > 0 || this.#changing > 0) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #pump(): void {
    if (this.#stopped) return;
    const now = this.#now();
    // Due items start while there are free slots; those blocked by the
    // concurrency limit stay in the heap and start when an attempt ends
    // (its end pumps again). Stale records (an item that finished, was
    // rescheduled, is held or running) are dropped on the way.
    for (let top = this.#due.peek(); top !== undefined; top = this.#due.peek()) {
      const entry = top.entry;
      const current = this.#entries.get(entry.item.envelope.id) === entry &&
        !entry.running && !entry.item.state.held && entry.dueAt === top.at;
      if (!current) {
        this.#due.pop();
        continue;
      }
      if (top.at > now || this.#active >= this.#options.concurrency) break;
      this.#due.pop();
      const destinations = this.#destinationsOf(entry);
      const full = this.#limits.firstFull(destinations);
      if (full !== undefined) {
        // Set aside, not left at the top of the heap: items for other
        // destinations behind it must still start.
        this.#limits.setAside(entry, full);
        continue;
      }
      this.#start(entry, destinations);
    }
    const next = this.#due.peek();
    // With every slot busy, an attempt's end pumps; only future items need a timer.
    this.#arm(
      next === undefined || (next.at <= now && this.#active >= this.#options.concurrency)
        ? Infinity
        : next.at,
    );
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (at === Infinity) return;
    // A busy queue re-pumps when an attempt ends; the timer covers retries.
    const delay = Math.max(0, Math.min(at - this.#now(), 2 ** 31 - 1));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, delay);
  }

  readonly #destinationsOf = (entry: Entry): string[] => {
    if (this.#options.destinationConcurrency === undefined) return [];
    return this.#courier.destinationsOf?.(pendingAddresses(entry.item)) ?? [];
  };

  /** Whether a set-aside entry may still start. */
  readonly #judge = (entry: Entry): Verdict =>
    this.#entries.get(entry.item.envelope.id) !== entry || entry.running ||
      entry.item.state.held
      ? "drop"
      : "start";

  /** Puts released entries back in the heap at their (past) due time. */
  #requeue(entries: Entry[]): void {
    for (const entry of entries) this.#due.push(entry);
  }

  #start(entry: Entry, destinations: string[]): void {
    entry.running = true;
    this.#limits.forget(entry);
    this.#active++;
    this.#limits.started(destinations);
    this.#attempt(entry.item)
      .catch((err) => {
        // The spool could not be updated; try again later rather than lose
        // the item. Its on-disk state is still the last durable one.
        this.#logger.error("queue attempt failed", {
          qid: entry.item.envelope.id,
          error: err instanceof Error ? err.message : String(err),
        });
        return this.#now() + this.#options.retryInitialMs;
      })
      .then((next) => {
        // All of the attempt's end in one step. Its retry goes into the heap
        // only together with running = false: a pump in between (another
        // attempt ending in the same turn) took a running item's record for
        // a stale one and dropped it, and the item was never tried again.
        entry.running = false;
        this.#active--;
        if (next === undefined) {
          this.#entries.delete(entry.item.envelope.id);
        } else {
          entry.dueAt = next;
          this.#due.push(entry);
        }
        this.#requeue(this.#limits.ended(destinations, this.#judge, this.#destinationsOf));
        this.#wakeIdle();
        this.#pump();
      });
  }

  /** Runs one attempt; resolves to the next due time, or undefined when done. */
  async #attempt(item: SpoolItem): Promise<number | undefined> {
    const { envelope } = item;
    const state: DeliveryState = copyState(item.state);
    const due = [...state.recipients.entries()].filter(([, r]) => r.status === "pending");
    const results = due.length === 0 ? [] : await this.#courier.deliver(
      item,
      due.map(([index, r]) => ({
        address: r.address,
        index,
        attempts: r.attempts,
        ...(r.done ? { done: r.done } : {}),
      })),
      () => this.#spool.openMessage(item),
    );
    const failed: NotifiedRecipient[] = [];
    for (const [position, [, rcpt]] of due.entries()) {
      const result = results[position] ??
        { status: "deferred" as const, error: "the courier gave no result" };
      rcpt.attempts++;
      if (result.status === "sent") {
        rcpt.status = "sent";
        delete rcpt.done;
        delete rcpt.last_error;
        delete rcpt.last_status;
        delete rcpt.remote_mta;
        this.#mailLog.delivery(envelope.id, rcpt.address, "sent", { dest: result.detail });
        continue;
      }
      rcpt.last_error = result.error;
      if (result.dsnStatus !== undefined) rcpt.last_status = result.dsnStatus;
      else delete rcpt.last_status;
      if (result.remoteMta !== undefined) rcpt.remote_mta = result.remoteMta;
      else delete rcpt.remote_mta;
      if (result.status === "failed") {
        rcpt.status = "failed";
        delete rcpt.done;
        failed.push(notified(rcpt));
      } else if (result.done && result.done.length > 0) {
        rcpt.done = [...new Set([...(rcpt.done ?? []), ...result.done])];
      }
      this.#mailLog.delivery(envelope.id, rcpt.address, result.status, { error: result.error });
    }

    const age = this.#now() - Date.parse(envelope.received_at);
    let pending = state.recipients.filter((r) => r.status === "pending");
    if (pending.length > 0 && age >= this.#options.maxQueueLifetimeMs) {
      for (const rcpt of pending) {
        rcpt.status = "failed";
        rcpt.last_error = `expired after ${queuedFor(age)} in the queue: ${
          rcpt.last_error ?? "no attempt succeeded"
        }`;
        // RFC 3463: 4.4.7 is "delivery time expired"; as a final status, 5.4.7.
        rcpt.last_status = "5.4.7";
        failed.push(notified(rcpt));
        this.#mailLog.delivery(envelope.id, rcpt.address, "failed", { error: rcpt.last_error });
      }
      pending = [];
    }
    // The bounce is queued before the item's state moves on: a crash in
    // between repeats the attempt rather than losing the notification.
    if (failed.length > 0) await this.#notifier?.notify(item, "failed", failed);
    const warnAfter = this.#options.delayWarningMs ?? 0;
    if (pending.length > 0 && warnAfter > 0 && age >= warnAfter && !state.warned) {
      await this.#notifier?.notify(item, "delayed", pending.map(notified));
      state.warned = true;
    }

    if (pending.length === 0) {
      await this.#spool.remove(envelope.id);
      const sent = state.recipients.filter((r) => r.status === "sent").length;
      this.#mailLog.completed(envelope.id, sent, state.recipients.length - sent);
      return undefined;
    }

    const attempts = Math.max(...pending.map((r) => r.attempts));
    const next = this.#now() + this.#backoff(attempts);
    state.next_attempt_at = new Date(next).toISOString();
    if (due.length > 0 || state.warned !== item.state.warned) {
      await this.#spool.saveState(envelope.id, state);
    }
    item.state = state;
    return next;
  }

  /** Exponential backoff with ±20% jitter so that retries do not align. */
  #backoff(attempts: number): number {
    const base = Math.min(
      this.#options.retryInitialMs * 2 ** Math.max(0, attempts - 1),
      this.#options.retryMaxMs,
    );
    return Math.round(base * (0.8 + 0.4 * this.#random()));
  }
}
