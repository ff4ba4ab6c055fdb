/**
 * The Queue's limits on deliveries at once: its concurrency, an idle queue
 * that does not poll while every slot is busy, and the limit per
 * destination, which lets items for other destinations start while a slow
 * one is at its limit.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SpoolItem } from "../../../src/queue/mod.ts";
import { deferred, until } from "../helpers.ts";
import {
  completedLines,
  FakeCourier,
  makeQueue,
  nowCalls,
  OPTIONS,
  spoolItem,
  useQueueSetup,
} from "./queue_setup.ts";

describe("Queue", () => {
  useQueueSetup();

  it("Queue never runs more deliveries at once than its concurrency", async () => {
    let active = 0;
    let max = 0;
    const full = deferred<void>();
    const courier = new FakeCourier(async () => {
      active++;
      max = Math.max(max, active);
      // Hold every slot until the limit is reached, then let all run.
      if (active === 3) full.resolve();
      await full.promise;
      await new Promise((r) => setTimeout(r, 1));
      active--;
      return { status: "sent", detail: "ok" };
    });
    const q = makeQueue(courier, { concurrency: 3 });
    const items: SpoolItem[] = [];
    for (let i = 0; i < 10; i++) items.push(await spoolItem([`u${i}@ex.test`]));
    for (const item of items) q.add(item);
    await until(() => completedLines().length === 10);
    assert.equal(courier.calls.length, 10);
    assert.equal(max, 3);
  });

  it("Queue stays idle while every delivery slot is busy", async () => {
    const gate = deferred<void>();
    const courier = new FakeCourier(async () => {
      await gate.promise;
      return { status: "sent", detail: "ok" };
    });
    const q = makeQueue(courier, { concurrency: 1 });
    q.add(await spoolItem(["a@ex.test"]));
    q.add(await spoolItem(["b@ex.test"]));
    await until(() => courier.calls.length === 1);
    const before = nowCalls;
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
    const pumpsWhileBusy = nowCalls - before;
    gate.resolve();
    await until(() => completedLines().length === 2);
    // A busy queue re-pumps when an attempt ends; nothing should poll meanwhile.
    assert.equal(pumpsWhileBusy, 0, `the queue polled the clock ${pumpsWhileBusy} times`);
  });

  /** A courier whose destinations are the recipients' domains but `local.test`. */
  class RoutingCourier extends FakeCourier {
    destinationsOf(recipients: readonly string[]): string[] {
      return [...new Set(recipients.map((a) => a.split("@")[1]!))].filter((d) =>
        d !== "local.test"
      );
    }
  }

  /** A routing courier whose deliveries all wait for `gate`, then succeed. */
  function heldCourier(): { gate: ReturnType<typeof deferred<void>>; courier: RoutingCourier } {
    const gate = deferred<void>();
    const courier = new RoutingCourier(async () => {
      await gate.promise;
      return { status: "sent", detail: "ok" };
    });
    return { gate, courier };
  }

  it("Queue starts items for other destinations while a slow one has its limit in flight", async () => {
    const slow = deferred<void>();
    let activeSlow = 0;
    let maxSlow = 0;
    const courier = new RoutingCourier(async (call) => {
      if (call.address.endsWith("@slow.test")) {
        activeSlow++;
        maxSlow = Math.max(maxSlow, activeSlow);
        await slow.promise;
        activeSlow--;
      }
      return { status: "sent", detail: "ok" };
    });
    const q = makeQueue(courier, { concurrency: 4, destinationConcurrency: 2 });
    // Six for the slow destination first, then others: without a limit per
    // destination, the slow ones would take all four slots.
    for (let i = 0; i < 6; i++) q.add(await spoolItem([`s${i}@slow.test`]));
    for (let i = 0; i < 4; i++) q.add(await spoolItem([`f${i}@fast.test`]));
    q.add(await spoolItem(["me@local.test"]));
    await until(() => completedLines().length === 5);
    assert.equal(maxSlow, 2);
    assert.deepEqual(
      courier.calls.filter((c) => !c.address.endsWith("@slow.test")).map((c) => c.address).sort(),
      ["f0@fast.test", "f1@fast.test", "f2@fast.test", "f3@fast.test", "me@local.test"],
    );
    slow.resolve();
    await until(() => completedLines().length === 11);
    assert.equal(maxSlow, 2);
    // Every item for the slow destination went, the first two due first (the
    // fake courier records a call once it has read the body, so the order
    // within those that run at once is not fixed).
    const slowCalls = courier.calls.filter((c) => c.address.endsWith("@slow.test")).map((c) =>
      c.address
    );
    assert.deepEqual(slowCalls.slice(0, 2).sort(), ["s0@slow.test", "s1@slow.test"]);
    assert.deepEqual(
      slowCalls.sort(),
      [0, 1, 2, 3, 4, 5].map((i) => `s${i}@slow.test`),
    );
  });

  it("Queue counts an item with recipients in two domains against both", async () => {
    const { gate, courier } = heldCourier();
    const q = makeQueue(courier, { concurrency: 4, destinationConcurrency: 1 });
    q.add(await spoolItem(["a@one.test", "b@two.test"]));
    q.add(await spoolItem(["c@two.test"]));
    q.add(await spoolItem(["d@three.test"]));
    // The fake courier calls one recipient of an item at a time, so the
    // first item shows as its first recipient until the gate opens.
    await until(() => courier.calls.length === 2);
    for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 1));
    assert.deepEqual(courier.calls.map((c) => c.address), ["a@one.test", "d@three.test"]);
    gate.resolve();
    await until(() => completedLines().length === 3);
    assert.equal(courier.calls.at(-1)!.address, "c@two.test");
  });

  it("setOptions() with a higher per-destination limit starts waiting items at once", async () => {
    const { gate, courier } = heldCourier();
    const q = makeQueue(courier, { concurrency: 8, destinationConcurrency: 1 });
    for (let i = 0; i < 4; i++) q.add(await spoolItem([`u${i}@slow.test`]));
    await until(() => courier.calls.length === 1);
    for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(courier.calls.length, 1);
    q.setOptions({ ...OPTIONS, concurrency: 8, destinationConcurrency: 3 });
    await until(() => courier.calls.length === 3);
    q.setOptions({ ...OPTIONS, concurrency: 8 });
    await until(() => courier.calls.length === 4);
    gate.resolve();
    await until(() => completedLines().length === 4);
  });

  it("Queue drops a waiting item that was finished meanwhile and starts the next one", async () => {
    const { gate, courier } = heldCourier();
    const q = makeQueue(courier, { concurrency: 4, destinationConcurrency: 1 });
    const items: SpoolItem[] = [];
    for (let i = 0; i < 3; i++) items.push(await spoolItem([`u${i}@slow.test`]));
    for (const item of items) q.add(item);
    await until(() => courier.calls.length === 1);
    assert.equal(await q.finish(items[1]!.envelope.id, "delete", "test"), "done");
    gate.resolve();
    await until(() => completedLines().length === 3);
    assert.deepEqual(courier.calls.map((c) => c.address), ["u0@slow.test", "u2@slow.test"]);
  });

  it("Queue starts an item whose destination has room when the one before it must wait for another", async () => {
    const gates = new Map<string, ReturnType<typeof deferred<void>>>();
    const gate = (address: string) => {
      let g = gates.get(address);
      if (!g) gates.set(address, g = deferred<void>());
      return g;
    };
    const courier = new RoutingCourier(async (call) => {
      await gate(call.address).promise;
      return { status: "sent", detail: "ok" };
    });
    const q = makeQueue(courier, { concurrency: 8, destinationConcurrency: 1 });
    q.add(await spoolItem(["s@slow.test"]));
    q.add(await spoolItem(["f@fast.test"]));
    await until(() => courier.calls.length === 2);
    // M needs both destinations, Y only the fast one: both wait for fast.
    q.add(await spoolItem(["m@fast.test", "m@slow.test"]));
    q.add(await spoolItem(["y@fast.test"]));
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(courier.calls.length, 2);
    // Fast has room again; M still waits for slow, so Y must start now,
    // while the slow attempt is still in flight.
    gate("f@fast.test").resolve();
    await until(() => courier.calls.some((c) => c.address === "y@fast.test"));
    assert.ok(!courier.calls.some((c) => c.address.startsWith("m@")), "M waits for slow");
    gate("y@fast.test").resolve();
    gate("m@fast.test").resolve();
    gate("m@slow.test").resolve();
    gate("s@slow.test").resolve();
    await until(() => completedLines().length === 4);
    assert.equal(courier.calls.filter((c) => c.address === "m@fast.test").length, 1);
  });

  it("retryNow() and a hold of an item that waits for its destination neither duplicate nor block it", async () => {
    const { gate, courier } = heldCourier();
    const q = makeQueue(courier, { concurrency: 8, destinationConcurrency: 1 });
    const items: SpoolItem[] = [];
    for (let i = 0; i < 4; i++) items.push(await spoolItem([`u${i}@slow.test`]));
    for (const item of items) q.add(item);
    await until(() => courier.calls.length === 1);
    assert.equal(q.retryNow(items[1]!.envelope.id), "done");
    assert.equal(q.retryNow(items[1]!.envelope.id), "done");
    assert.equal(await q.setHeld(items[2]!.envelope.id, true), "done");
    gate.resolve();
    // u0, u1 once each, u3; u2 is held and does not hold up u3.
    await until(() => completedLines().length === 3);
    assert.deepEqual(courier.calls.map((c) => c.address).sort(), [
      "u0@slow.test",
      "u1@slow.test",
      "u3@slow.test",
    ]);
    assert.equal(await q.setHeld(items[2]!.envelope.id, false), "done");
    await until(() => completedLines().length === 4);
    assert.equal(courier.calls.length, 4);
  });
});
