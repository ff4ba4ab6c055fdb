/**
 * The queue's administrator operation `finish()`: delete (logged, nobody
 * told), bounce (only the pending recipients told, and no empty bounce), and
 * an item kept, scheduled as it was, when its bounce cannot be queued. The
 * setting and how time is moved are in queue_admin_setup.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Queue, SpoolItem } from "../../../src/queue/mod.ts";
import { deferred, listDir, until } from "../helpers.ts";
import {
  clock,
  DEFER,
  FAIL,
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

  it("stop() waits for a finish() in progress, which then removes the item", async () => {
    // stop() waited for attempts only: a shutdown closed the spool while a
    // finish was still queueing its bounce or removing the item's files.
    const courier = partlyCourier();
    const q = makeQueue(courier);
    q.setNotifier(recordingNotifier().notifier);
    const item = await partlyDelivered(q, courier);
    const id = item.envelope.id;
    // The finish's bounce waits at a gate.
    const bounceQueued = deferred<void>();
    const { notifier, notices } = recordingNotifier({ wait: bounceQueued.promise });
    q.setNotifier(notifier);
    const finishing = q.finish(id, "bounce", "removed by the admin");
    await until(() => notices.length === 1);
    let stopped = false;
    const stopping = q.stop().then(() => {
      stopped = true;
    });
    for (let turn = 0; turn < 20; turn++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(stopped, false, "stop() returned while the finish was queueing its bounce");
    bounceQueued.resolve();
    assert.equal(await finishing, "done");
    await stopping;
    assert.deepEqual(await listDir(queueDir), []);
  });
});
