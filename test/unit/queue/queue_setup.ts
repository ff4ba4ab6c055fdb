/**
 * The setting the Queue unit tests share (queue_attempts_test.ts,
 * queue_destinations_test.ts, queue_notices_test.ts): a fake courier that
 * answers as each test decides, a spool that records the states it saves and
 * moves the clock to the next attempt, and a queue over both that reads an
 * injected clock.
 *
 * `useQueueSetup()`, called in a describe, makes a fresh spool, clock and
 * logs before each test and stops the queue after it. The `let` bindings
 * below are those of the running test: imports of them are live, so a test
 * file reads the current ones.
 *
 * @module
 */

import { afterEach, beforeEach } from "node:test";
import { Counters, Logger, MailLog } from "../../../src/log/mod.ts";
import {
  type Courier,
  type DeliveryResult,
  type DeliveryState,
  Queue,
  type QueueOptions,
  type RecipientRef,
  Spool,
  type SpoolItem,
} from "../../../src/queue/mod.ts";
import { collectText, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";

/** The clock's time when each test starts. */
export const T0 = Date.parse("2026-03-01T00:00:00.000Z");
/** A day in milliseconds. */
export const DAY = 86_400_000;

/** The queue options a test starts from. */
export const OPTIONS: QueueOptions = {
  concurrency: 4,
  retryInitialMs: 60_000,
  retryMaxMs: 300_000,
  maxQueueLifetimeMs: 5 * DAY,
};

/** A delivery call as the fake courier saw it. */
interface Call {
  qid: string;
  address: string;
  index: number;
  body: string;
}

type Decide = (call: Call, attempt: number) => DeliveryResult | Promise<DeliveryResult>;

/** A courier that reads the message and answers with `decide`. */
export class FakeCourier implements Courier {
  calls: Call[] = [];
  #decide: Decide;

  constructor(decide: Decide) {
    this.#decide = decide;
  }

  async deliver(
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]> {
    const results: DeliveryResult[] = [];
    for (const { address, index } of recipients) {
      const call = { qid: item.envelope.id, address, index, body: await collectText(open()) };
      this.calls.push(call);
      const attempt = this.calls.filter((c) => c.address === call.address && c.qid === call.qid)
        .length;
      results.push(await this.#decide(call, attempt));
    }
    return results;
  }
}

/** A spool that records saved states and moves the clock to the next attempt. */
class RecordingSpool extends Spool {
  saved: Array<{ id: string; state: DeliveryState; at: number }> = [];
  clock: { t: number } | undefined;
  failSave = false;

  override async saveState(id: string, state: DeliveryState): Promise<void> {
    if (this.failSave) throw new Error("disk full");
    const at = this.clock?.t ?? Date.now();
    await super.saveState(id, state);
    this.saved.push({ id, state: structuredClone(state), at });
    // Let the retry fall due at once: the queue's next pump starts it.
    if (this.clock && state.next_attempt_at) this.clock.t = Date.parse(state.next_attempt_at);
  }
}

/** The running test's data folder. */
export let dataDir: string;
/** The running test's spool. */
export let spool: RecordingSpool;
/** The running test's clock, which the queue reads. */
export let clock: { t: number };
/** How often the running test's queue read the clock. */
export let nowCalls: number;
/** The running test's mail log lines. */
export let mailLines: string[];
/** The running test's application log lines. */
export let appLines: string[];
/** The running test's counters. */
export let counters: Counters;
let mailLog: MailLog;
let logger: Logger;
let queue: Queue | undefined;

/** Gives each test of the calling describe a fresh spool, clock and logs; stops its queue after. */
export function useQueueSetup(): void {
  beforeEach(async () => {
    dataDir = await makeTempDir("postern-queue-");
    spool = new RecordingSpool(dataDir);
    await spool.init();
    clock = { t: T0 };
    spool.clock = clock;
    nowCalls = 0;
    mailLines = [];
    appLines = [];
    counters = new Counters();
    mailLog = new MailLog((line) => mailLines.push(line), counters, () => new Date(clock.t));
    logger = new Logger("debug", (line) => appLines.push(line), () => new Date(clock.t));
    queue = undefined;
  });
  afterEach(async () => {
    await queue?.stop();
    await spool.close();
    await removeDir(dataDir);
  });
}

/** A queue over the running test's spool, with `options` over {@linkcode OPTIONS}. */
export function makeQueue(
  courier: Courier,
  options: Partial<QueueOptions> = {},
  random = 0.5,
): Queue {
  queue = new Queue(
    spool,
    courier,
    mailLog,
    logger,
    { ...OPTIONS, ...options },
    () => {
      nowCalls++;
      return clock.t;
    },
    () => random,
  );
  return queue;
}

/** The mail log's `completed` lines so far. */
export function completedLines(): string[] {
  return mailLines.filter((l) => l.includes(" event=completed "));
}

/** Spools a message for `to`, received at `receivedAt`. */
export async function spoolItem(to = ["alice@ex.test"], receivedAt = T0): Promise<SpoolItem> {
  const envelope = makeEnvelope({ to, received_at: new Date(receivedAt).toISOString() });
  return await spoolMessage(spool, envelope, `Subject: ${envelope.id}\r\n\r\nbody\r\n`);
}
