/**
 * The queue's administrator operations that change when an item is tried:
 * `retryNow()` (an item due at once; a held one stays held) and `setHeld()`
 * (the hold saved in the spool, and its removal starting the item). The
 * setting and how time is moved are in queue_admin_setup.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { listDir, until } from "../helpers.ts";
import {
  clock,
  DEFER,
  DEFER_ERROR,
  gate,
  linesSince,
  mailLines,
  makeQueue,
  queueDir,
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
});
