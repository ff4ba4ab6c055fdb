/**
 * The queue's administrator operations, what they show and what they
 * refuse: `list()` and `get()` with each item's due time and its running and
 * held flags, and the `missing` and `busy` answers of `retryNow()`,
 * `setHeld()` and `finish()`, which change nothing. The setting and how time
 * is moved are in queue_admin_setup.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { listDir, until } from "../helpers.ts";
import { makeEnvelope } from "./fixtures.ts";
import {
  clock,
  DEFER,
  gate,
  linesSince,
  mailLines,
  makeQueue,
  queueDir,
  recordingNotifier,
  RETRY_MS,
  ScriptedCourier,
  SENT,
  settled,
  spoolItem,
  T0,
  useQueueAdminSetup,
} from "./queue_admin_setup.ts";

describe("Queue administration", () => {
  useQueueAdminSetup();

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
});
