/**
 * The setting the tests of the queue's administrator operations share
 * (queue_admin_lookup_test.ts, queue_admin_retry_hold_test.ts,
 * queue_admin_finish_test.ts): `list()`, `get()`, `retryNow()`, `setHeld()`
 * and `finish()`. Before those files only the end-to-end admin test reached
 * these operations, and a mutation run left most of their mutants alive;
 * each test names the behaviour it pins, so that a flipped condition or a
 * dropped statement in one of these methods fails one of them.
 *
 * Time never passes by itself: the queue reads an injected clock that only
 * the test moves, and an attempt that must stay open waits on a promise the
 * test resolves. A real timer the queue arms for a retry is a minute away
 * and cleared by `stop()`, so no test depends on one firing.
 *
 * `useQueueAdminSetup()`, called in a describe, makes a fresh spool and
 * clock before each test and releases and stops everything after it. The
 * `let` bindings below are those of the running test: imports of them are
 * live, so a test file reads the current ones.
 *
 * @module
 */

import { join } from "node:path";
import { afterEach, beforeEach } from "node:test";
import { Counters, Logger, MailLog } from "../../../src/log/mod.ts";
import {
  type Courier,
  type DeliveryResult,
  type NotifiedRecipient,
  type Notifier,
  Queue,
  type QueueOptions,
  type RecipientRef,
  Spool,
  type SpoolItem,
} from "../../../src/queue/mod.ts";
import { deferred, listDir, makeTempDir, removeDir, until } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";

/** The clock's time when each test starts. */
export const T0 = Date.parse("2026-03-01T00:00:00.000Z");
/** The first retry's delay; with random() at 0.5 the jitter is nil, so it is exact. */
export const RETRY_MS = 60_000;

const OPTIONS: QueueOptions = {
  concurrency: 4,
  retryInitialMs: RETRY_MS,
  retryMaxMs: 300_000,
  maxQueueLifetimeMs: 5 * 86_400_000,
};

/** A recipient the courier delivered. */
export const SENT: DeliveryResult = { status: "sent", detail: "ok" };
/** The error of a deferred recipient. */
export const DEFER_ERROR = "451 try later";
/** A recipient the courier could not deliver yet. */
export const DEFER: DeliveryResult = { status: "deferred", error: DEFER_ERROR };
/** A recipient the courier failed for good. */
export const FAIL: DeliveryResult = {
  status: "failed",
  error: "550 no such user",
  dsnStatus: "5.1.1",
};

/** One `deliver()` call: the item and the recipients it was for. */
interface Call {
  qid: string;
  to: string[];
}

/** How the courier answers one recipient; `attempt` counts from 1. */
type Answer = (address: string, attempt: number) => DeliveryResult | Promise<DeliveryResult>;

/** A courier that answers each recipient with `answer` and records every call. */
export class ScriptedCourier implements Courier {
  calls: Call[] = [];
  #answer: Answer;

  constructor(answer: Answer) {
    this.#answer = answer;
  }

  deliver(item: SpoolItem, recipients: RecipientRef[]): Promise<DeliveryResult[]> {
    // Recorded before anything is awaited: the queue starts an attempt
    // synchronously, so a test can tell at once whether an action started one.
    this.calls.push({ qid: item.envelope.id, to: recipients.map((r) => r.address) });
    return Promise.all(recipients.map((r) => this.#answer(r.address, r.attempts + 1)));
  }

  /** The calls for one item. */
  callsFor(qid: string): Call[] {
    return this.calls.filter((c) => c.qid === qid);
  }
}

/** A notification as the notifier saw it, with what the spool held then. */
interface Notice {
  qid: string;
  kind: "failed" | "delayed";
  recipients: NotifiedRecipient[];
  spooled: string[];
}
let dataDir: string;
/** The running test's spool/queue folder. */
export let queueDir: string;
let spool: Spool;
/** The running test's clock, which the queue reads. */
export let clock: { t: number };
/** The running test's mail log lines. */
export let mailLines: string[];
let queue: Queue | undefined;
/**
 * Resolves what a test held open. Run before `stop()`, which waits for
 * attempts in flight: a test that fails with a delivery still open would
 * otherwise hang there instead of reporting its failure.
 */
let releases: Array<() => void>;

/** Gives each test of the calling describe a fresh spool and clock; ends all after it. */
export function useQueueAdminSetup(): void {
  beforeEach(async () => {
    dataDir = await makeTempDir("postern-queue-admin-");
    queueDir = join(dataDir, "spool", "queue");
    spool = new Spool(dataDir);
    await spool.init();
    clock = { t: T0 };
    mailLines = [];
    releases = [];
    queue = undefined;
  });
  afterEach(async () => {
    for (const release of releases) release();
    await queue?.stop();
    await spool.close();
    await removeDir(dataDir);
  });
}

/** A queue over the running test's spool, with {@linkcode OPTIONS}. */
export function makeQueue(courier: Courier): Queue {
  const at = () => new Date(clock.t);
  queue = new Queue(
    spool,
    courier,
    new MailLog((line) => mailLines.push(line), new Counters(), at),
    new Logger("debug", () => {}, at),
    OPTIONS,
    () => clock.t,
    () => 0.5,
  );
  return queue;
}

/** An answer the test gives later; released as `fallback` at the end. */
export function gate<T>(fallback: T): { promise: Promise<T>; resolve: (value: T) => void } {
  const open = deferred<T>();
  releases.push(() => open.resolve(fallback));
  return open;
}

/** A notifier that records each call; it fails, or waits for `wait`, when told. */
export function recordingNotifier(
  options: { fail?: boolean; wait?: Promise<void> } = {},
): { notifier: Notifier; notices: Notice[] } {
  const notices: Notice[] = [];
  const notifier: Notifier = {
    async notify(item, kind, recipients) {
      notices.push({
        qid: item.envelope.id,
        kind,
        recipients: structuredClone(recipients),
        spooled: await listDir(queueDir),
      });
      if (options.wait) await options.wait;
      if (options.fail) throw new Error("cannot queue the bounce");
    },
  };
  return { notifier, notices };
}

/** Spools a message for `to`, received at {@linkcode T0}. */
export async function spoolItem(to: string[]): Promise<SpoolItem> {
  const envelope = makeEnvelope({ to, received_at: new Date(T0).toISOString() });
  return await spoolMessage(spool, envelope, `Subject: ${envelope.id}\r\n\r\nbody\r\n`);
}

/** Waits until `calls` attempts of `id` were made and none is running. */
export async function settled(q: Queue, courier: ScriptedCourier, id: string, calls: number) {
  await until(() => courier.callsFor(id).length === calls && q.get(id)?.running === false);
}

/** Mail log lines from index `from` on, without their timestamps. */
export function linesSince(from: number): string[] {
  return mailLines.slice(from).map((l) => l.replace(/^ts=\S+ /, "").trimEnd());
}
