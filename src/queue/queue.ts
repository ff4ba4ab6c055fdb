/**
 * The delivery queue: hands spooled items to a courier, keeps per-recipient
 * state, retries temporary failures with backoff until the item's lifetime
 * runs out, and removes items once every recipient is final.
 *
 * @module
 */

import type { Logger, MailLog } from "../log/mod.ts";
import type { DeliveryState } from "./records.ts";
import type { Spool, SpoolItem } from "./spool.ts";

/** The outcome of delivering one message to one envelope recipient. */
export type DeliveryResult =
  | { status: "sent"; detail: string }
  | { status: "deferred" | "failed"; error: string };

/** Something that delivers messages: local (Maildir, pipes) or remote. */
export interface Courier {
  /**
   * Delivers `item` to the envelope recipient `recipient`. `open` streams
   * the message; it may be called once per destination. Never throws: every
   * failure is a result that says whether it is permanent.
   */
  deliver(
    item: SpoolItem,
    recipient: { address: string; index: number },
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult>;
}

/** Retry and concurrency settings. */
export interface QueueOptions {
  concurrency: number;
  retryInitialMs: number;
  retryMaxMs: number;
  maxQueueLifetimeMs: number;
}

interface Entry {
  item: SpoolItem;
  dueAt: number;
  running: boolean;
}

/** What the administration sees of a queued item. */
export interface QueueEntryView {
  item: SpoolItem;
  /** When the next attempt is due (milliseconds since the epoch). */
  dueAt: number;
  /** An attempt is running now. */
  running: boolean;
  held: boolean;
}

/** The outcome of an administrative action on one item. */
export type AdminOutcome = "done" | "missing" | "busy";

function view(entry: Entry): QueueEntryView {
  return {
    item: entry.item,
    dueAt: entry.dueAt,
    running: entry.running,
    held: entry.item.state.held === true,
  };
}

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
  #active = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #idle: Array<() => void> = [];

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

  /**
   * Changes retry and concurrency settings (a policy reload). Retries
   * already scheduled keep their time; a higher concurrency starts waiting
   * items at once.
   */
  setOptions(options: QueueOptions): void {
    this.#options = options;
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
    entry.dueAt = this.#now();
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
    const state: DeliveryState = { ...structuredClone(entry.item.state) };
    if (held) state.held = true;
    else delete state.held;
    await this.#spool.saveState(id, state);
    entry.item.state = state;
    if (!held) entry.dueAt = this.#now();
    this.#pump();
    return "done";
  }

  /**
   * Ends an item at once. `bounce` marks its pending recipients failed (a
   * bounce to the sender follows once outbound delivery exists); `delete`
   * drops it without a trace but the mail log line.
   */
  async finish(id: string, how: "bounce" | "delete", reason: string): Promise<AdminOutcome> {
    const entry = this.#entries.get(id);
    if (!entry) return "missing";
    if (entry.running) return "busy";
    this.#entries.delete(id);
    const { recipients } = entry.item.state;
    for (const rcpt of recipients) {
      if (rcpt.status !== "pending") continue;
      this.#mailLog.delivery(id, rcpt.address, "failed", { error: `${how}: ${reason}` });
    }
    await this.#spool.remove(id);
    const sent = recipients.filter((r) => r.status === "sent").length;
    this.#mailLog.completed(id, sent, recipients.length - sent);
    return "done";
  }

  /** Adds an item; its first attempt is due now unless its state says later. */
  add(item: SpoolItem): void {
    const next = item.state.next_attempt_at;
    const dueAt = next === undefined ? this.#now() : Date.parse(next);
    this.#entries.set(item.envelope.id, { item, dueAt, running: false });
    this.#pump();
  }

  /** Stops starting attempts and waits for those in flight to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#active > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #pump(): void {
    if (this.#stopped) return;
    const now = this.#now();
    let earliest = Infinity;
    for (const entry of this.#entries.values()) {
      if (entry.running || entry.item.state.held) continue;
      if (entry.dueAt <= now && this.#active < this.#options.concurrency) {
        this.#start(entry);
      } else if (entry.dueAt > now) {
        // Due items blocked by the concurrency limit start when a slot
        // frees (the attempt's end pumps again); only future ones need a timer.
        earliest = Math.min(earliest, entry.dueAt);
      }
    }
    this.#arm(earliest);
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

  #start(entry: Entry): void {
    entry.running = true;
    this.#active++;
    this.#attempt(entry.item)
      .then((next) => {
        if (next === undefined) {
          this.#entries.delete(entry.item.envelope.id);
        } else {
          entry.dueAt = next;
        }
      })
      .catch((err) => {
        // The spool could not be updated; try again later rather than lose
        // the item. Its on-disk state is still the last durable one.
        this.#logger.error("queue attempt failed", {
          qid: entry.item.envelope.id,
          error: err instanceof Error ? err.message : String(err),
        });
        entry.dueAt = this.#now() + this.#options.retryInitialMs;
      })
      .finally(() => {
        entry.running = false;
        this.#active--;
        if (this.#active === 0) { for (const resolve of this.#idle.splice(0)) resolve(); }
        this.#pump();
      });
  }

  /** Runs one attempt; resolves to the next due time, or undefined when done. */
  async #attempt(item: SpoolItem): Promise<number | undefined> {
    const { envelope } = item;
    const state: DeliveryState = structuredClone(item.state);
    let changed = false;
    for (const [index, rcpt] of state.recipients.entries()) {
      if (rcpt.status !== "pending") continue;
      const result = await this.#courier.deliver(
        item,
        { address: rcpt.address, index },
        () => this.#spool.openMessage(item),
      );
      rcpt.attempts++;
      changed = true;
      if (result.status === "sent") {
        rcpt.status = "sent";
        delete rcpt.last_error;
        this.#mailLog.delivery(envelope.id, rcpt.address, "sent", { dest: result.detail });
      } else {
        rcpt.last_error = result.error;
        if (result.status === "failed") rcpt.status = "failed";
        this.#mailLog.delivery(envelope.id, rcpt.address, result.status, { error: result.error });
      }
    }

    const age = this.#now() - Date.parse(envelope.received_at);
    const pending = state.recipients.filter((r) => r.status === "pending");
    if (pending.length > 0 && age >= this.#options.maxQueueLifetimeMs) {
      for (const rcpt of pending) {
        rcpt.status = "failed";
        rcpt.last_error = `expired after ${Math.round(age / 3_600_000)}h in the queue: ${
          rcpt.last_error ?? "no attempt succeeded"
        }`;
        this.#mailLog.delivery(envelope.id, rcpt.address, "failed", { error: rcpt.last_error });
      }
    }

    if (state.recipients.every((r) => r.status !== "pending")) {
      await this.#spool.remove(envelope.id);
      const sent = state.recipients.filter((r) => r.status === "sent").length;
      this.#mailLog.completed(envelope.id, sent, state.recipients.length - sent);
      return undefined;
    }

    const attempts = Math.max(...pending.map((r) => r.attempts));
    const next = this.#now() + this.#backoff(attempts);
    state.next_attempt_at = new Date(next).toISOString();
    if (changed) await this.#spool.saveState(envelope.id, state);
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
