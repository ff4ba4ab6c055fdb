/**
 * The Queue's attempts of one item: delivery, retries with back-off and
 * jitter, the targets kept between attempts, expiry at the end of the queue
 * lifetime, a state that cannot be saved, an item already due when added,
 * and stop() with an attempt in flight.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Courier, DeliveryResult } from "../../../src/queue/mod.ts";
import { deferred, listDir, until } from "../helpers.ts";
import {
  appLines,
  completedLines,
  counters,
  dataDir,
  DAY,
  FakeCourier,
  mailLines,
  makeQueue,
  spool,
  spoolItem,
  T0,
  useQueueSetup,
} from "./queue_setup.ts";

describe("Queue", () => {
  useQueueSetup();

  it("Queue removes the item and logs completed when the first attempt is sent", async () => {
    const courier = new FakeCourier(() => ({ status: "sent", detail: "maildir:alice@ex.test" }));
    const q = makeQueue(courier);
    const item = await spoolItem();
    q.add(item);
    assert.equal(q.size, 1);
    await until(() => completedLines().length === 1);
    await until(() => q.size === 0);
    assert.equal(courier.calls.length, 1);
    assert.deepEqual(courier.calls[0], {
      qid: item.envelope.id,
      address: "alice@ex.test",
      index: 0,
      body: `Subject: ${item.envelope.id}\r\n\r\nbody\r\n`,
    });
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), []);
    assert.deepEqual(spool.saved, []);
    const qid = item.envelope.id;
    assert.ok(
      mailLines.some((l) =>
        l.includes(`qid=${qid} event=delivery to=<alice@ex.test> result=sent`) &&
        l.includes("dest=maildir:alice@ex.test")
      ),
      mailLines.join(""),
    );
    assert.match(completedLines()[0]!, new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
    assert.equal(counters.get("deliveries_total", { result: "sent" }), 1);
    assert.equal(counters.get("queue_completed_total"), 1);
  });

  it("Queue saves state and schedules the retry after retryInitialMs when deferred", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "mailbox busy" }));
    const q = makeQueue(courier);
    spool.clock = undefined; // keep the clock still: only one attempt
    const item = await spoolItem();
    q.add(item);
    await until(() => spool.saved.length === 1);
    const saved = spool.saved[0]!;
    assert.equal(saved.id, item.envelope.id);
    assert.deepEqual(saved.state.recipients, [
      { address: "alice@ex.test", status: "pending", attempts: 1, last_error: "mailbox busy" },
    ]);
    assert.equal(saved.state.next_attempt_at, new Date(T0 + 60_000).toISOString());
    assert.equal(q.size, 1);
    // The state is on disk.
    const { items } = await spool.load();
    assert.deepEqual(items[0]!.state, saved.state);
    assert.ok(mailLines.some((l) => l.includes('result=deferred error="mailbox busy"')));
    assert.equal(counters.get("deliveries_total", { result: "deferred" }), 1);
    assert.equal(completedLines().length, 0);
  });

  it("Queue doubles the retry delay on each deferral and caps it at retryMaxMs", async () => {
    const courier = new FakeCourier((_call, attempt) =>
      attempt < 6
        ? { status: "deferred", error: `try ${attempt}` }
        : { status: "sent", detail: "ok" }
    );
    const q = makeQueue(courier);
    const item = await spoolItem();
    q.add(item);
    await until(() => completedLines().length === 1);
    const delays = spool.saved.map((s) => Date.parse(s.state.next_attempt_at!) - s.at);
    assert.deepEqual(delays, [60_000, 120_000, 240_000, 300_000, 300_000]);
    assert.deepEqual(spool.saved.map((s) => s.state.recipients[0]!.attempts), [1, 2, 3, 4, 5]);
    assert.equal(courier.calls.length, 6);
    assert.match(completedLines()[0]!, /sent=1 failed=0/);
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), []);
  });

  it("Queue jitters the delay by -20% when random() is 0 and +20% when it is 1", async () => {
    const low = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "x" })), {}, 0);
    spool.clock = undefined;
    low.add(await spoolItem());
    await until(() => spool.saved.length === 1);
    assert.equal(Date.parse(spool.saved[0]!.state.next_attempt_at!) - T0, 48_000);
    await low.stop();

    const high = makeQueue(new FakeCourier(() => ({ status: "deferred", error: "x" })), {}, 1);
    high.add(await spoolItem());
    await until(() => spool.saved.length === 2);
    assert.equal(Date.parse(spool.saved[1]!.state.next_attempt_at!) - T0, 72_000);
  });

  it("Queue treats failed as final and does not retry", async () => {
    const courier = new FakeCourier(() => ({ status: "failed", error: "no such mailbox" }));
    const q = makeQueue(courier);
    const item = await spoolItem();
    q.add(item);
    await until(() => completedLines().length === 1);
    await until(() => q.size === 0);
    assert.equal(courier.calls.length, 1);
    assert.match(completedLines()[0]!, /sent=0 failed=1/);
    assert.ok(mailLines.some((l) => l.includes('result=failed error="no such mailbox"')));
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), []);
    assert.equal(counters.get("deliveries_total", { result: "failed" }), 1);
  });

  it("Queue retries only the pending recipients when some were sent", async () => {
    const courier = new FakeCourier((call, attempt) =>
      call.address === "bob@ex.test" && attempt === 1
        ? { status: "deferred", error: "later" }
        : { status: "sent", detail: call.address }
    );
    const q = makeQueue(courier);
    const item = await spoolItem(["alice@ex.test", "bob@ex.test", "carol@ex.test"]);
    q.add(item);
    await until(() => completedLines().length === 1);
    assert.deepEqual(courier.calls.map((c) => [c.address, c.index]), [
      ["alice@ex.test", 0],
      ["bob@ex.test", 1],
      ["carol@ex.test", 2],
      ["bob@ex.test", 1],
    ]);
    assert.equal(spool.saved.length, 1);
    assert.deepEqual(spool.saved[0]!.state.recipients.map((r) => r.status), [
      "sent",
      "pending",
      "sent",
    ]);
    assert.match(completedLines()[0]!, /sent=3 failed=0/);
  });

  it("Queue keeps the targets a deferred recipient reported delivered, hands them to each retry, and drops them once final", async () => {
    const seen: Array<readonly string[] | undefined> = [];
    const answers: DeliveryResult[] = [
      { status: "deferred", error: "b down", done: ["pipe:p", "forward:a@remote.test"] },
      { status: "deferred", error: "b still down", done: ["forward:c@remote.test"] },
      { status: "sent", detail: "b" },
    ];
    const courier: Courier = {
      deliver: (_item, recipients) => {
        seen.push(recipients[0]!.done);
        return Promise.resolve([answers[seen.length - 1]!]);
      },
    };
    const q = makeQueue(courier);
    q.add(await spoolItem(["team@ex.test"]));
    await until(() => completedLines().length === 1);
    assert.deepEqual(seen, [
      undefined,
      ["pipe:p", "forward:a@remote.test"],
      ["pipe:p", "forward:a@remote.test", "forward:c@remote.test"],
    ]);
    // Kept on disk between attempts, so a restart does not repeat them either.
    assert.deepEqual(spool.saved.map((s) => s.state.recipients[0]!.done), [
      ["pipe:p", "forward:a@remote.test"],
      ["pipe:p", "forward:a@remote.test", "forward:c@remote.test"],
    ]);
  });

  it("Queue fails pending recipients as expired when the item is older than maxQueueLifetimeMs", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "still down" }));
    const q = makeQueue(courier);
    const item = await spoolItem(["alice@ex.test"], T0 - 6 * DAY);
    q.add(item);
    await until(() => completedLines().length === 1);
    assert.equal(courier.calls.length, 1);
    assert.match(completedLines()[0]!, /sent=0 failed=1/);
    const failedLine = mailLines.find((l) => l.includes("result=failed"));
    assert.ok(failedLine, mailLines.join(""));
    assert.match(failedLine, /error="expired after 144h in the queue: still down"/);
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), []);
  });

  it("Queue says how long an item was queued in minutes when the lifetime is under an hour", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "still down" }));
    const q = makeQueue(courier, { maxQueueLifetimeMs: 30 * 60_000 });
    q.add(await spoolItem(["alice@ex.test"], T0 - 45 * 60_000));
    await until(() => completedLines().length === 1);
    const failedLine = mailLines.find((l) => l.includes("result=failed"));
    assert.ok(failedLine, mailLines.join(""));
    assert.match(failedLine, /error="expired after 45m in the queue: still down"/);
  });

  it("Queue expires an item at the attempt where its age reaches maxQueueLifetimeMs exactly", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "still down" }));
    const q = makeQueue(courier, { maxQueueLifetimeMs: 60 * 60_000 });
    q.add(await spoolItem(["alice@ex.test"], T0 - 60 * 60_000));
    await until(() => completedLines().length === 1);
    assert.equal(courier.calls.length, 1, "no attempt after the lifetime");
    const failedLine = mailLines.find((l) => l.includes("result=failed"));
    assert.ok(failedLine, mailLines.join(""));
    // An hour exactly is said in hours.
    assert.match(failedLine, /error="expired after 1h in the queue: still down"/);
  });

  it("Queue says a queued time of a minute exactly in minutes", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "still down" }));
    const q = makeQueue(courier, { maxQueueLifetimeMs: 60_000 });
    q.add(await spoolItem(["alice@ex.test"], T0 - 60_000));
    await until(() => completedLines().length === 1);
    const failedLine = mailLines.find((l) => l.includes("result=failed"));
    assert.ok(failedLine, mailLines.join(""));
    assert.match(failedLine, /error="expired after 1m in the queue: still down"/);
  });

  it("Queue keeps retrying when the item is younger than maxQueueLifetimeMs", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "down" }));
    const q = makeQueue(courier);
    spool.clock = undefined;
    q.add(await spoolItem(["alice@ex.test"], T0 - 5 * DAY + 1));
    await until(() => spool.saved.length === 1);
    assert.equal(spool.saved[0]!.state.recipients[0]!.status, "pending");
    assert.equal(completedLines().length, 0);
  });

  it("Queue logs the error and keeps the item when the state cannot be saved", async () => {
    const courier = new FakeCourier(() => ({ status: "deferred", error: "down" }));
    spool.failSave = true;
    const q = makeQueue(courier);
    const item = await spoolItem();
    q.add(item);
    await until(() => appLines.some((l) => l.includes("queue attempt failed")));
    const line = appLines.find((l) => l.includes("queue attempt failed"))!;
    assert.match(line, /level=error/);
    assert.match(line, new RegExp(`qid=${item.envelope.id}`));
    assert.match(line, /error="disk full"/);
    assert.equal(q.size, 1);
    assert.deepEqual(await listDir(`${dataDir}/spool/queue`), [`${item.envelope.id}.msg`]);
  });

  it("Queue retries an item whose attempt ends in the same turn as another item's", async () => {
    // Seen in the Dovecot test under load: a bounce's attempt ended (its
    // spool file removed) in the same turn as the deferral of the message it
    // reported on (its state saved). The other attempt's end ran the
    // queue's pump while the deferred item still counted as running, the
    // pump dropped its retry as stale, and the item got no further attempt
    // (and stop() waited for it for ever).
    const courier = new FakeCourier((call, attempt) =>
      call.address === "late@ex.test" && attempt === 1
        ? { status: "deferred", error: "mailbox full for now" }
        : { status: "sent", detail: "maildir:ok" }
    );
    const done = await spoolItem(["done@ex.test"]);
    const late = await spoolItem(["late@ex.test"]);
    // Each attempt's last step on the spool waits here, so that both end together.
    const gate = deferred<void>();
    const waiting: string[] = [];
    const remove = spool.remove.bind(spool);
    const saveState = spool.saveState.bind(spool);
    spool.remove = async (id) => {
      await remove(id);
      waiting.push(`remove ${id}`);
      await gate.promise;
    };
    spool.saveState = async (id, state) => {
      await saveState(id, state);
      waiting.push(`save ${id}`);
      await gate.promise;
    };
    const q = makeQueue(courier);
    q.add(done);
    await until(() => waiting.length === 1);
    q.add(late);
    await until(() => waiting.length === 2);
    assert.deepEqual(waiting, [`remove ${done.envelope.id}`, `save ${late.envelope.id}`]);
    gate.resolve();
    // The saved state moved the clock to the retry, so it is due at the next pump.
    await until(() => completedLines().length === 2);
    assert.equal(courier.calls.filter((c) => c.address === "late@ex.test").length, 2);
    assert.equal(q.size, 0);
  });

  it("add() delivers at once when next_attempt_at is already past", async () => {
    const courier = new FakeCourier(() => ({ status: "sent", detail: "ok" }));
    const q = makeQueue(courier);
    const item = await spoolItem();
    item.state.next_attempt_at = new Date(T0 - 1000).toISOString();
    q.add(item);
    await until(() => completedLines().length === 1);
    assert.equal(courier.calls.length, 1);
  });

  it("stop() waits for attempts in flight and starts no more", async () => {
    const gate = deferred<void>();
    let finished = 0;
    const courier = new FakeCourier(async () => {
      await gate.promise;
      finished++;
      return { status: "sent", detail: "ok" };
    });
    const q = makeQueue(courier, { concurrency: 1 });
    q.add(await spoolItem(["a@ex.test"]));
    q.add(await spoolItem(["b@ex.test"]));
    await until(() => courier.calls.length === 1);
    let stopped = false;
    const stopping = q.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(stopped, false);
    gate.resolve();
    await stopping;
    assert.equal(finished, 1);
    assert.equal(courier.calls.length, 1);
    assert.equal(q.size, 1);
  });
});
