import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
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
import { collectText, deferred, listDir, makeTempDir, removeDir, until } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "./fixtures.ts";

const T0 = Date.parse("2026-03-01T00:00:00.000Z");
const DAY = 86_400_000;

const OPTIONS: QueueOptions = {
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
class FakeCourier implements Courier {
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

describe("Queue", () => {
  let dataDir: string;
  let spool: RecordingSpool;
  let clock: { t: number };
  let nowCalls: number;
  let mailLines: string[];
  let appLines: string[];
  let counters: Counters;
  let mailLog: MailLog;
  let logger: Logger;
  let queue: Queue | undefined;

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

  function makeQueue(courier: Courier, options: Partial<QueueOptions> = {}, random = 0.5): Queue {
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

  function completedLines(): string[] {
    return mailLines.filter((l) => l.includes(" event=completed "));
  }

  async function spoolItem(to = ["alice@ex.test"], receivedAt = T0): Promise<SpoolItem> {
    const envelope = makeEnvelope({ to, received_at: new Date(receivedAt).toISOString() });
    return await spoolMessage(spool, envelope, `Subject: ${envelope.id}\r\n\r\nbody\r\n`);
  }

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
