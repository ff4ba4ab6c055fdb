/**
 * The queue's administrator operations: `list()`, `get()`, `retryNow()`,
 * `setHeld()` and `finish()`. Before this file only the end-to-end admin test
 * reached them, and a mutation run left most of their mutants alive; each
 * test here names the behaviour it pins, so that a flipped condition or a
 * dropped statement in one of these methods fails one of them.
 *
 * Time never passes by itself: the queue reads an injected clock that only
 * the test moves, and an attempt that must stay open waits on a promise the
 * test resolves. A real timer the queue arms for a retry is a minute away
 * and cleared by `stop()`, so no test depends on one firing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
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

const T0 = Date.parse("2026-03-01T00:00:00.000Z");
/** The first retry's delay; with random() at 0.5 the jitter is nil, so it is exact. */
const RETRY_MS = 60_000;

const OPTIONS: QueueOptions = {
  concurrency: 4,
  retryInitialMs: RETRY_MS,
  retryMaxMs: 300_000,
  maxQueueLifetimeMs: 5 * 86_400_000,
};

const SENT: DeliveryResult = { status: "sent", detail: "ok" };
const DEFER_ERROR = "451 try later";
const DEFER: DeliveryResult = { status: "deferred", error: DEFER_ERROR };
const FAIL: DeliveryResult = { status: "failed", error: "550 no such user", dsnStatus: "5.1.1" };

/** One `deliver()` call: the item and the recipients it was for. */
interface Call {
  qid: string;
  to: string[];
}

/** How the courier answers one recipient; `attempt` counts from 1. */
type Answer = (address: string, attempt: number) => DeliveryResult | Promise<DeliveryResult>;

/** A courier that answers each recipient with `answer` and records every call. */
class ScriptedCourier implements Courier {
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

describe("Queue administration", () => {
  let dataDir: string;
  let queueDir: string;
  let spool: Spool;
  let clock: { t: number };
  let mailLines: string[];
  let queue: Queue | undefined;
  /**
   * Resolves what a test held open. Run before `stop()`, which waits for
   * attempts in flight: a test that fails with a delivery still open would
   * otherwise hang there instead of reporting its failure.
   */
  let releases: Array<() => void>;

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

  function makeQueue(courier: Courier): Queue {
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
  function gate<T>(fallback: T): { promise: Promise<T>; resolve: (value: T) => void } {
    const open = deferred<T>();
    releases.push(() => open.resolve(fallback));
    return open;
  }

  /** A notifier that records each call; it fails, or waits for `wait`, when told. */
  function recordingNotifier(
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

  async function spoolItem(to: string[]): Promise<SpoolItem> {
    const envelope = makeEnvelope({ to, received_at: new Date(T0).toISOString() });
    return await spoolMessage(spool, envelope, `Subject: ${envelope.id}\r\n\r\nbody\r\n`);
  }

  /** Waits until `calls` attempts of `id` were made and none is running. */
  async function settled(q: Queue, courier: ScriptedCourier, id: string, calls: number) {
    await until(() => courier.callsFor(id).length === calls && q.get(id)?.running === false);
  }

  /** Mail log lines from index `from` on, without their timestamps. */
  function linesSince(from: number): string[] {
    return mailLines.slice(from).map((l) => l.replace(/^ts=\S+ /, "").trimEnd());
  }

  /** The delivery state saved on disk for `id`, as stored. */
  async function stateOnDisk(id: string): Promise<unknown> {
    return JSON.parse(await readFile(join(queueDir, `${id}.state`), "utf8"));
  }

  /** The state saved after one deferred attempt for a single recipient. */
  function deferredOnce(address: string): Record<string, unknown> {
    return {
      v: 1,
      recipients: [{ address, status: "pending", attempts: 1, last_error: DEFER_ERROR }],
      next_attempt_at: new Date(T0 + RETRY_MS).toISOString(),
    };
  }

  /**
   * An item after its first attempt: one recipient sent, one failed (and
   * bounced by the attempt), two deferred and so still pending.
   */
  async function partlyDelivered(q: Queue, courier: ScriptedCourier): Promise<SpoolItem> {
    const item = await spoolItem([
      "sent@ex.test",
      "gone@ex.test",
      "wait1@ex.test",
      "wait2@ex.test",
    ]);
    q.add(item);
    await settled(q, courier, item.envelope.id, 1);
    return item;
  }

  function partlyCourier(): ScriptedCourier {
    return new ScriptedCourier((address) =>
      address === "sent@ex.test" ? SENT : address === "gone@ex.test" ? FAIL : DEFER
    );
  }

  it("list() and get() show each item with its due time and its running and held flags", async () => {
    const slow = gate(SENT);
    const courier = new ScriptedCourier((address) =>
      address === "slow@ex.test" ? slow.promise : DEFER
    );
    const q = makeQueue(courier);
    const later = await spoolItem(["later@ex.test"]);
    q.add(later);
    await settled(q, courier, later.envelope.id, 1);
    // Not due for five minutes, as after a restart; then held.
    const parked = await spoolItem(["parked@ex.test"]);
    parked.state.next_attempt_at = new Date(T0 + 300_000).toISOString();
    q.add(parked);
    assert.equal(await q.setHeld(parked.envelope.id, true), "done");
    clock.t = T0 + 1_000;
    const busy = await spoolItem(["slow@ex.test"]);
    q.add(busy);

    const views = [
      { item: later, dueAt: T0 + RETRY_MS, running: false, held: false },
      { item: parked, dueAt: T0 + 300_000, running: false, held: true },
      { item: busy, dueAt: T0 + 1_000, running: true, held: false },
    ];
    assert.deepEqual(q.list(), views);
    for (const view of views) {
      const got = q.get(view.item.envelope.id);
      assert.deepEqual(got, view);
      assert.equal(got?.item, view.item, "the queued item itself, with its current state");
    }
    assert.equal(q.get(makeEnvelope().id), undefined);

    // Once its last recipient is final, an item is in neither.
    slow.resolve(SENT);
    await until(() => q.size === 2);
    assert.equal(q.get(busy.envelope.id), undefined);
    assert.deepEqual(q.list(), views.slice(0, 2));
  });

  it("retryNow(), setHeld() and finish() answer missing for an unknown ID or one that left the queue", async () => {
    const courier = new ScriptedCourier((address) => address === "done@ex.test" ? SENT : DEFER);
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const gone = await spoolItem(["done@ex.test"]);
    q.add(gone);
    await until(() => q.get(gone.envelope.id) === undefined);
    const kept = await spoolItem(["wait@ex.test"]);
    q.add(kept);
    await settled(q, courier, kept.envelope.id, 1);
    const before = q.list();
    const mark = mailLines.length;

    for (const id of [makeEnvelope().id, gone.envelope.id]) {
      assert.equal(q.retryNow(id), "missing");
      assert.equal(await q.setHeld(id, true), "missing");
      assert.equal(await q.setHeld(id, false), "missing");
      assert.equal(await q.finish(id, "bounce", "admin"), "missing");
      assert.equal(await q.finish(id, "delete", "admin"), "missing");
      assert.equal(q.get(id), undefined);
    }
    assert.deepEqual(q.list(), before);
    assert.deepEqual(linesSince(mark), []);
    assert.deepEqual(notices, []);
    assert.equal(courier.calls.length, 2);
    const kid = kept.envelope.id;
    assert.deepEqual(await listDir(queueDir), [`${kid}.msg`, `${kid}.state`]);
  });

  it("retryNow(), setHeld() and finish() answer busy while an attempt runs, and change nothing", async () => {
    const slow = gate(SENT);
    const courier = new ScriptedCourier(() => slow.promise);
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await spoolItem(["a@ex.test", "b@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    const mark = mailLines.length;

    assert.equal(q.retryNow(id), "busy");
    assert.equal(await q.setHeld(id, true), "busy");
    assert.equal(await q.setHeld(id, false), "busy");
    assert.equal(await q.finish(id, "bounce", "admin"), "busy");
    assert.equal(await q.finish(id, "delete", "admin"), "busy");
    assert.deepEqual(q.get(id), { item, dueAt: T0, running: true, held: false });
    assert.deepEqual(await listDir(queueDir), [`${id}.msg`], "no hold saved");
    assert.deepEqual(linesSince(mark), []);
    assert.deepEqual(notices, []);

    slow.resolve(SENT);
    await until(() => q.get(id) === undefined);
    assert.equal(courier.calls.length, 1, "retryNow() queued no second attempt");
    assert.deepEqual(linesSince(mark).filter((l) => l.includes("event=completed")), [
      `qid=${id} event=completed sent=2 failed=0`,
    ]);
    assert.deepEqual(notices, []);
  });

  it("retryNow(), setHeld() and finish() answer busy while finish() is queuing the item's bounce", async () => {
    const courier = new ScriptedCourier(() => DEFER);
    const q = makeQueue(courier);
    const bounceQueued = gate<void>(undefined);
    const { notifier, notices } = recordingNotifier({ wait: bounceQueued.promise });
    q.setNotifier(notifier);
    const item = await spoolItem(["a@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    await settled(q, courier, id, 1);

    const finishing = q.finish(id, "bounce", "admin");
    await until(() => notices.length === 1);
    assert.equal(q.get(id)?.running, true);
    assert.equal(q.retryNow(id), "busy");
    assert.equal(await q.setHeld(id, true), "busy");
    assert.equal(await q.finish(id, "delete", "again"), "busy");
    assert.equal(courier.calls.length, 1);

    bounceQueued.resolve();
    assert.equal(await finishing, "done");
    assert.equal(notices.length, 1);
    assert.equal(mailLines.filter((l) => l.includes("event=completed")).length, 1);
    assert.equal(q.get(id), undefined);
  });

  it("retryNow() makes a deferred item due now: its attempt starts before the clock reaches the retry", async () => {
    const courier = new ScriptedCourier((_address, attempt) => attempt === 1 ? DEFER : SENT);
    const q = makeQueue(courier);
    const item = await spoolItem(["a@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    await settled(q, courier, id, 1);
    assert.equal(q.get(id)?.dueAt, T0 + RETRY_MS);

    clock.t = T0 + 1_000;
    const mark = mailLines.length;
    assert.equal(q.retryNow(id), "done");
    assert.deepEqual(q.get(id), { item, dueAt: T0 + 1_000, running: true, held: false });
    assert.equal(courier.callsFor(id).length, 2);
    await until(() => q.get(id) === undefined);
    assert.deepEqual(q.list(), []);
    assert.deepEqual(linesSince(mark), [
      `qid=${id} event=delivery to=<a@ex.test> result=sent dest=ok`,
      `qid=${id} event=completed sent=1 failed=0`,
    ]);
  });

  it("retryNow() of a held item answers done but leaves it held, with no attempt", async () => {
    const courier = new ScriptedCourier(() => DEFER);
    const q = makeQueue(courier);
    const item = await spoolItem(["a@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    await settled(q, courier, id, 1);
    assert.equal(await q.setHeld(id, true), "done");

    clock.t = T0 + 1_000;
    assert.equal(q.retryNow(id), "done");
    // An attempt starts synchronously; one turn more lets anything queued run.
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(courier.callsFor(id).length, 1);
    assert.equal(q.get(id)?.running, false);
    assert.equal(q.get(id)?.held, true);
    assert.deepEqual(await stateOnDisk(id), { ...deferredOnce("a@ex.test"), held: true });
  });

  it("setHeld(id, true) saves the hold in the spool, and the item gets no attempt once due", async () => {
    const courier = new ScriptedCourier((address) => address === "other@ex.test" ? SENT : DEFER);
    const q = makeQueue(courier);
    const item = await spoolItem(["a@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    await settled(q, courier, id, 1);
    assert.deepEqual(await stateOnDisk(id), deferredOnce("a@ex.test"));

    assert.equal(await q.setHeld(id, true), "done");
    assert.deepEqual(await stateOnDisk(id), { ...deferredOnce("a@ex.test"), held: true });
    assert.deepEqual(q.get(id), { item, dueAt: T0 + RETRY_MS, running: false, held: true });

    // At its retry time, the pump that another item's arrival runs passes it by.
    clock.t = T0 + RETRY_MS;
    const other = await spoolItem(["other@ex.test"]);
    q.add(other);
    await until(() => q.get(other.envelope.id) === undefined);
    assert.equal(courier.callsFor(id).length, 1);
    assert.deepEqual(q.get(id), { item, dueAt: T0 + RETRY_MS, running: false, held: true });
  });

  it("setHeld(id, false) removes the hold from the spool and starts the item at once", async () => {
    const second = gate(SENT);
    const courier = new ScriptedCourier((_address, attempt) =>
      attempt === 1 ? DEFER : second.promise
    );
    const q = makeQueue(courier);
    const item = await spoolItem(["a@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    await settled(q, courier, id, 1);
    assert.equal(await q.setHeld(id, true), "done");

    clock.t = T0 + 1_000;
    assert.equal(await q.setHeld(id, false), "done");
    assert.deepEqual(q.get(id), { item, dueAt: T0 + 1_000, running: true, held: false });
    assert.equal(courier.callsFor(id).length, 2);
    // Read while the attempt is held open, before it rewrites or removes the state.
    assert.deepEqual(await stateOnDisk(id), deferredOnce("a@ex.test"));

    second.resolve(SENT);
    await until(() => q.get(id) === undefined);
    assert.deepEqual(await listDir(queueDir), []);
  });

  it("finish() with delete removes the item from the queue and the spool, logs each pending recipient failed, and tells nobody", async () => {
    const courier = partlyCourier();
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await partlyDelivered(q, courier);
    const id = item.envelope.id;
    assert.equal(notices.length, 1, "the attempt bounced gone@");
    assert.deepEqual(await listDir(queueDir), [`${id}.msg`, `${id}.state`]);
    const mark = mailLines.length;

    assert.equal(await q.finish(id, "delete", "spam run"), "done");
    assert.equal(q.get(id), undefined);
    assert.deepEqual(q.list(), []);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual(linesSince(mark), [
      `qid=${id} event=delivery to=<wait1@ex.test> result=failed error="delete: spam run"`,
      `qid=${id} event=delivery to=<wait2@ex.test> result=failed error="delete: spam run"`,
      `qid=${id} event=completed sent=1 failed=3`,
    ]);
    assert.equal(notices.length, 1, "a delete sends no bounce");
  });

  it("finish() with bounce notifies only the pending recipients, then removes the item and logs its counts", async () => {
    const courier = partlyCourier();
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await partlyDelivered(q, courier);
    const id = item.envelope.id;
    const mark = mailLines.length;

    assert.equal(await q.finish(id, "bounce", "removed by the admin"), "done");
    assert.equal(notices.length, 2);
    const bounced = { error: "removed by the admin", status: "5.0.0", remoteMta: undefined };
    assert.deepEqual(notices[1], {
      qid: id,
      kind: "failed",
      recipients: [
        { address: "wait1@ex.test", ...bounced },
        { address: "wait2@ex.test", ...bounced },
      ],
      // The sender is told while the message is still in the spool.
      spooled: [`${id}.msg`, `${id}.state`],
    });
    assert.equal(q.get(id), undefined);
    assert.deepEqual(await listDir(queueDir), []);
    assert.deepEqual(linesSince(mark), [
      `qid=${id} event=delivery to=<wait1@ex.test> result=failed error="bounce: removed by the admin"`,
      `qid=${id} event=delivery to=<wait2@ex.test> result=failed error="bounce: removed by the admin"`,
      `qid=${id} event=completed sent=1 failed=3`,
    ]);
  });

  it("finish() with bounce sends no empty bounce when no recipient is pending", async () => {
    const courier = new ScriptedCourier(() => DEFER);
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await spoolItem(["a@ex.test", "b@ex.test"]);
    const id = item.envelope.id;
    // Every recipient final, but the item not yet due: add() accepts such a
    // state, and an attempt with nobody to deliver to would just remove it.
    item.state = {
      v: 1,
      recipients: [
        { address: "a@ex.test", status: "sent", attempts: 1 },
        { address: "b@ex.test", status: "failed", attempts: 1, last_error: "550 no" },
      ],
      next_attempt_at: new Date(T0 + RETRY_MS).toISOString(),
    };
    q.add(item);
    const mark = mailLines.length;

    assert.equal(await q.finish(id, "bounce", "admin"), "done");
    assert.deepEqual(notices, []);
    assert.deepEqual(linesSince(mark), [`qid=${id} event=completed sent=1 failed=1`]);
    assert.equal(courier.calls.length, 0);
  });

  it("finish() keeps the item, scheduled as it was, when its bounce cannot be queued", async () => {
    const courier = new ScriptedCourier((address, attempt) =>
      address === "other@ex.test" || attempt > 1 ? SENT : DEFER
    );
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier({ fail: true });
    q.setNotifier(notifier);
    const item = await spoolItem(["a@ex.test"]);
    const id = item.envelope.id;
    q.add(item);
    await settled(q, courier, id, 1);

    await assert.rejects(q.finish(id, "bounce", "admin"), /cannot queue the bounce/);
    assert.equal(notices.length, 1);
    assert.deepEqual(q.get(id), { item, dueAt: T0 + RETRY_MS, running: false, held: false });
    assert.deepEqual(await listDir(queueDir), [`${id}.msg`, `${id}.state`]);
    assert.equal(mailLines.filter((l) => l.includes("event=completed")).length, 0);

    // At its retry time, the pump that another item's arrival runs starts it.
    clock.t = T0 + RETRY_MS;
    q.add(await spoolItem(["other@ex.test"]));
    await until(() => q.size === 0);
    assert.equal(courier.callsFor(id).length, 2);
  });
});
