/**
 * What the Queue tells the sender through its notifier: bounces for failed
 * and expired recipients (before the item leaves the spool), one delay
 * warning kept across restarts, finish() with bounce or delete, and an item
 * kept when its bounce cannot be queued.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Queue } from "../../../src/queue/mod.ts";
import { listDir, until } from "../helpers.ts";
import {
  appLines,
  completedLines,
  dataDir,
  DAY,
  FakeCourier,
  makeQueue,
  spool,
  spoolItem,
  T0,
  useQueueSetup,
} from "./queue_setup.ts";

describe("Queue", () => {
  useQueueSetup();

  /** A notifier that records each call and what the spool held at that moment. */
  type NotifierOf = Parameters<Queue["setNotifier"]>[0];
  type Notified = Parameters<NotifierOf["notify"]>[2];
  interface Notice {
    qid: string;
    kind: "failed" | "delayed";
    recipients: Notified;
    spooled: string[];
  }
  function recordingNotifier(fail = false): { notifier: NotifierOf; notices: Notice[] } {
    const notices: Notice[] = [];
    const notifier: NotifierOf = {
      async notify(item, kind, recipients) {
        notices.push({
          qid: item.envelope.id,
          kind,
          recipients: structuredClone(recipients),
          spooled: await listDir(`${dataDir}/spool/queue`),
        });
        if (fail) throw new Error("cannot queue the bounce");
      },
    };
    return { notifier, notices };
  }

  it("Queue notifies failed recipients before it removes the item, never sent ones", async () => {
    const courier = new FakeCourier((call) =>
      call.address === "gone@ex.test"
        ? {
          status: "failed",
          error: "550 5.1.1 no such user",
          dsnStatus: "5.1.1",
          remoteMta: "mx.ex.test",
        }
        : { status: "sent", detail: "ok" }
    );
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await spoolItem(["ok@ex.test", "gone@ex.test", "fine@ex.test"]);
    q.add(item);
    await until(() => completedLines().length === 1);
    assert.equal(notices.length, 1);
    const notice = notices[0]!;
    assert.equal(notice.qid, item.envelope.id);
    assert.equal(notice.kind, "failed");
    assert.deepEqual(notice.recipients, [{
      address: "gone@ex.test",
      error: "550 5.1.1 no such user",
      status: "5.1.1",
      remoteMta: "mx.ex.test",
    }]);
    // The item was still in the spool while the sender was being told.
    assert.ok(notice.spooled.includes(`${item.envelope.id}.msg`), notice.spooled.join(" "));
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), []);
  });

  it("Queue does not notify when every recipient is sent", async () => {
    const q = makeQueue(new FakeCourier(() => ({ status: "sent", detail: "ok" })));
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    q.add(await spoolItem(["a@ex.test", "b@ex.test"]));
    await until(() => completedLines().length === 1);
    assert.deepEqual(notices, []);
  });

  it("Queue notifies a recipient that fails on a retry, leaving out the one sent earlier", async () => {
    const courier = new FakeCourier((call, attempt) =>
      call.address === "a@ex.test"
        ? { status: "sent", detail: "ok" }
        : attempt === 1
        ? { status: "deferred", error: "451 later" }
        : { status: "failed", error: "550 rejected", dsnStatus: "5.7.1" }
    );
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    q.add(await spoolItem(["a@ex.test", "b@ex.test"]));
    await until(() => completedLines().length === 1);
    assert.equal(notices.length, 1);
    assert.deepEqual(notices[0]!.recipients.map((r) => [r.address, r.status]), [
      ["b@ex.test", "5.7.1"],
    ]);
  });

  it("Queue notifies expired recipients as failed with status 5.4.7", async () => {
    const courier = new FakeCourier(() => ({
      status: "deferred",
      error: "421 busy",
      remoteMta: "mx.far.test",
    }));
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await spoolItem(["late@far.test"], T0 - 6 * DAY);
    q.add(item);
    await until(() => completedLines().length === 1);
    assert.equal(notices.length, 1);
    const notice = notices[0]!;
    assert.equal(notice.kind, "failed");
    assert.equal(notice.recipients.length, 1);
    const rcpt = notice.recipients[0]!;
    assert.equal(rcpt.address, "late@far.test");
    assert.equal(rcpt.status, "5.4.7");
    assert.match(rcpt.error, /expired/);
    assert.match(rcpt.error, /421 busy/);
    assert.equal(rcpt.remoteMta, "mx.far.test");
    assert.ok(notice.spooled.includes(`${item.envelope.id}.msg`));
  });

  it("Queue warns once about a delayed message and persists that it did", async () => {
    const courier = new FakeCourier((_call, attempt) =>
      attempt < 4 ? { status: "deferred", error: "452 full" } : { status: "sent", detail: "ok" }
    );
    const q = makeQueue(courier, { delayWarningMs: 3_600_000 });
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    const item = await spoolItem(["slow@ex.test"], T0 - 2 * 3_600_000);
    q.add(item);
    await until(() => completedLines().length === 1);
    assert.equal(courier.calls.length, 4);
    assert.equal(notices.length, 1, "one warning, not one per deferral");
    assert.equal(notices[0]!.kind, "delayed");
    assert.deepEqual(notices[0]!.recipients, [{
      address: "slow@ex.test",
      error: "452 full",
      status: undefined,
      remoteMta: undefined,
    }]);
    assert.equal(spool.saved[0]!.state.warned, true, "the warning is recorded in the spool");
  });

  it("Queue warns at the attempt where the age reaches delayWarningMs exactly", async () => {
    const courier = new FakeCourier((_call, attempt) =>
      attempt < 2 ? { status: "deferred", error: "452 full" } : { status: "sent", detail: "ok" }
    );
    const q = makeQueue(courier, { delayWarningMs: 3_600_000 });
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    q.add(await spoolItem(["slow@ex.test"], T0 - 3_600_000));
    await until(() => completedLines().length === 1);
    assert.equal(notices.length, 1);
    assert.equal(spool.saved[0]!.state.warned, true, "warned at the first attempt, not the next");
  });

  it("Queue keeps the warned flag on disk so that a restart does not warn again", async () => {
    const q = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "down" })), {
      delayWarningMs: 60_000,
    });
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    spool.clock = undefined;
    const item = await spoolItem(["slow@ex.test"], T0 - 3_600_000);
    q.add(item);
    await until(() => spool.saved.length === 1);
    assert.deepEqual(notices.map((n) => n.kind), ["delayed"]);
    const { items } = await spool.load();
    assert.equal(items[0]!.state.warned, true);
    await q.stop();

    // A new queue over the same spool, as after a restart.
    const again = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "down" })), {
      delayWarningMs: 60_000,
    });
    again.setNotifier(notifier);
    const reloaded = items[0]!;
    reloaded.state.next_attempt_at = new Date(T0).toISOString();
    again.add(reloaded);
    await until(() => spool.saved.length === 2);
    assert.equal(notices.length, 1);
  });

  it("Queue sends no delay warning before delayWarningMs or when it is 0", async () => {
    const { notifier, notices } = recordingNotifier();
    spool.clock = undefined;
    const young = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "x" })), {
      delayWarningMs: 3_600_000,
    });
    young.setNotifier(notifier);
    young.add(await spoolItem(["a@ex.test"], T0 - 3_599_000));
    await until(() => spool.saved.length === 1);
    assert.equal(spool.saved[0]!.state.warned, undefined);
    await young.stop();

    const off = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "x" })), {
      delayWarningMs: 0,
    });
    off.setNotifier(notifier);
    off.add(await spoolItem(["b@ex.test"], T0 - 4 * DAY));
    await until(() => spool.saved.length === 2);
    assert.deepEqual(notices, []);
  });

  it("Queue warns only about pending recipients when others failed in the same attempt", async () => {
    const courier = new FakeCourier((call) =>
      call.address === "gone@ex.test"
        ? { status: "failed", error: "550 no" }
        : { status: "deferred", error: "451 later" }
    );
    const q = makeQueue(courier, { delayWarningMs: 60_000 });
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    spool.clock = undefined;
    q.add(await spoolItem(["gone@ex.test", "wait@ex.test"], T0 - 3_600_000));
    await until(() => spool.saved.length === 1);
    assert.deepEqual(
      notices.map((n) => [n.kind, n.recipients.map((r) => r.address)]),
      [["failed", ["gone@ex.test"]], ["delayed", ["wait@ex.test"]]],
    );
  });

  it("finish() with bounce notifies the pending recipients as failed, then removes the item", async () => {
    const courier = new FakeCourier((call) =>
      call.address === "a@ex.test"
        ? { status: "sent", detail: "ok" }
        : { status: "deferred", error: "down" }
    );
    const q = makeQueue(courier);
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    spool.clock = undefined;
    const item = await spoolItem(["a@ex.test", "b@ex.test", "c@ex.test"]);
    q.add(item);
    await until(() => spool.saved.length === 1 && q.get(item.envelope.id)?.running === false);
    assert.equal(await q.finish(item.envelope.id, "bounce", "removed by the admin"), "done");
    assert.equal(notices.length, 1);
    assert.equal(notices[0]!.kind, "failed");
    assert.deepEqual(notices[0]!.recipients.map((r) => r.address), ["b@ex.test", "c@ex.test"]);
    assert.ok(notices[0]!.recipients.every((r) => r.error.includes("removed by the admin")));
    assert.ok(notices[0]!.spooled.includes(`${item.envelope.id}.msg`));
    assert.equal(q.size, 0);
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), []);
  });

  it("finish() with delete tells nobody", async () => {
    const q = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "down" })));
    const { notifier, notices } = recordingNotifier();
    q.setNotifier(notifier);
    spool.clock = undefined;
    const item = await spoolItem(["a@ex.test"]);
    q.add(item);
    await until(() => spool.saved.length === 1 && q.get(item.envelope.id)?.running === false);
    assert.equal(await q.finish(item.envelope.id, "delete", "spam"), "done");
    assert.deepEqual(notices, []);
    assert.equal(q.size, 0);
  });

  it("Queue keeps the item when the notifier cannot queue the bounce", async () => {
    const q = makeQueue(new FakeCourier(() => ({ status: "failed", error: "550 no" })));
    const { notifier, notices } = recordingNotifier(true);
    q.setNotifier(notifier);
    spool.clock = undefined;
    const item = await spoolItem(["a@ex.test"]);
    q.add(item);
    await until(() => appLines.some((l) => l.includes("queue attempt failed")));
    assert.equal(notices.length, 1);
    assert.equal(q.size, 1);
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), [`${item.envelope.id}.msg`]);
    assert.equal(completedLines().length, 0);
  });
});
