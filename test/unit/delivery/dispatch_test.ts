/**
 * Tests of `DispatchCourier`: recipients of our domains (and addresses
 * without a domain) go to the local courier one at a time, the rest go to
 * remote delivery in one call, and the results come back in envelope order.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LocalCourier } from "../../../src/delivery/local.ts";
import { DispatchCourier, type RemoteDelivery } from "../../../src/delivery/mod.ts";
import type { DeliveryResult, RecipientRef, SpoolItem } from "../../../src/queue/mod.ts";
import { chunksOf, collectText, deferred } from "../helpers.ts";
import { makeEnvelope } from "../queue/fixtures.ts";

const ITEM = {
  envelope: makeEnvelope({ to: [] }),
  state: { recipients: [] },
} as unknown as SpoolItem;

const open = () => chunksOf("Subject: hi\r\n\r\nbody\r\n");

function refs(...addresses: string[]): RecipientRef[] {
  return addresses.map((address, index) => ({ address, index, attempts: 0 }));
}

/** A local courier that records its calls and answers "sent" after `delayMs`. */
class FakeLocal {
  calls: Array<{ address: string; index: number; body: string }> = [];
  active = 0;
  maxActive = 0;
  #delayMs: number;

  constructor(delayMs = 0) {
    this.#delayMs = delayMs;
  }

  async deliver(
    _item: SpoolItem,
    recipient: { address: string; index: number },
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    const body = await collectText(open());
    await new Promise((r) => setTimeout(r, this.#delayMs));
    this.calls.push({ address: recipient.address, index: recipient.index, body });
    this.active--;
    return { status: "sent", detail: `local:${recipient.address}` };
  }
}

/** A fake with `deliver()` as a LocalCourier: `deliverAll()` calls it per recipient, in turn. */
function asLocal(fake: Pick<FakeLocal, "deliver">): LocalCourier {
  const deliverAll = async (
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]> => {
    const results: DeliveryResult[] = [];
    for (const recipient of recipients) results.push(await fake.deliver(item, recipient, open));
    return results;
  };
  return {
    deliver: fake.deliver.bind(fake),
    deliverAll,
    remoteDomainsOf: () => [],
  } as unknown as LocalCourier;
}

/** Remote delivery that records each call and answers "sent" per recipient. */
function fakeRemote(): { fn: RemoteDelivery; calls: RecipientRef[][] } {
  const calls: RecipientRef[][] = [];
  const fn: RemoteDelivery = async (_item, recipients, open) => {
    calls.push(recipients);
    await collectText(open());
    return recipients.map((r) => ({ status: "sent", detail: `remote:${r.address}` }));
  };
  return { fn, calls };
}

const OURS = new Set(["ours.test", "also-ours.test"]);
const isOurs = (domain: string) => OURS.has(domain);

describe("DispatchCourier", () => {
  it("deliver() sends local and remote recipients to their couriers, results in envelope order", async () => {
    const local = new FakeLocal();
    const remote = fakeRemote();
    const courier = new DispatchCourier(asLocal(local), remote.fn, isOurs);
    const recipients = refs(
      "a@far.test",
      "b@ours.test",
      "c@other.test",
      "d@also-ours.test",
      "e@far.test",
    );
    const results = await courier.deliver(ITEM, recipients, open);
    assert.deepEqual(results, [
      { status: "sent", detail: "remote:a@far.test" },
      { status: "sent", detail: "local:b@ours.test" },
      { status: "sent", detail: "remote:c@other.test" },
      { status: "sent", detail: "local:d@also-ours.test" },
      { status: "sent", detail: "remote:e@far.test" },
    ]);
    assert.deepEqual(local.calls.map((c) => [c.address, c.index]), [
      ["b@ours.test", 1],
      ["d@also-ours.test", 3],
    ]);
    assert.equal(local.calls[0]!.body, "Subject: hi\r\n\r\nbody\r\n");
    // Every remote recipient in one call, in envelope order, with its ref unchanged.
    assert.equal(remote.calls.length, 1);
    assert.deepEqual(remote.calls[0], [recipients[0], recipients[2], recipients[4]]);
  });

  it("destinationsOf() names each remote domain once, normalized, and no local one", () => {
    const courier = new DispatchCourier(asLocal(new FakeLocal()), fakeRemote().fn, isOurs);
    assert.deepEqual(
      courier.destinationsOf([
        "a@Remote.TEST",
        "b@remote.test.",
        "c@ours.test",
        "postmaster",
        "d@b\u00fccher.test",
        "e@other.test",
      ]),
      ["remote.test", "xn--bcher-kva.test", "other.test"],
    );
    assert.deepEqual(courier.destinationsOf(["x@ours.test", "y@also-ours.test"]), []);
  });

  it("destinationsOf() counts the domains local recipients' aliases forward to", () => {
    const local = asLocal(new FakeLocal());
    const forwards: Record<string, string[]> = { "fw@ours.test": ["tarpit.test", "remote.test"] };
    Object.assign(local, { remoteDomainsOf: (address: string) => forwards[address] ?? [] });
    const courier = new DispatchCourier(local, fakeRemote().fn, isOurs);
    assert.deepEqual(courier.destinationsOf(["fw@ours.test", "a@remote.test", "x@ours.test"]), [
      "tarpit.test",
      "remote.test",
    ]);
  });

  it("deliver() matches our domains in lower case", async () => {
    const asked: string[] = [];
    const local = new FakeLocal();
    const remote = fakeRemote();
    const courier = new DispatchCourier(asLocal(local), remote.fn, (domain) => {
      asked.push(domain);
      return isOurs(domain);
    });
    await courier.deliver(ITEM, refs("Bob@OURS.Test", "x@Far.TEST"), open);
    assert.deepEqual(asked, ["ours.test", "far.test"]);
    assert.deepEqual(local.calls.map((c) => c.address), ["Bob@OURS.Test"]);
    assert.deepEqual(remote.calls[0]!.map((r) => r.address), ["x@Far.TEST"]);
  });

  it("deliver() treats an address without a domain as local", async () => {
    const asked: string[] = [];
    const local = new FakeLocal();
    const remote = fakeRemote();
    const courier = new DispatchCourier(asLocal(local), remote.fn, (domain) => {
      asked.push(domain);
      return false;
    });
    const results = await courier.deliver(ITEM, refs("postmaster"), open);
    assert.deepEqual(results, [{ status: "sent", detail: "local:postmaster" }]);
    assert.equal(remote.calls.length, 0);
    assert.deepEqual(asked, [], "no domain to ask about");
  });

  it("deliver() does not call remote delivery when every recipient is local", async () => {
    const local = new FakeLocal();
    const remote = fakeRemote();
    const courier = new DispatchCourier(asLocal(local), remote.fn, isOurs);
    await courier.deliver(ITEM, refs("a@ours.test", "b@ours.test"), open);
    assert.equal(remote.calls.length, 0);
    assert.equal(local.calls.length, 2);
  });

  it("deliver() does not call the local courier when every recipient is remote", async () => {
    const local = new FakeLocal();
    const remote = fakeRemote();
    const courier = new DispatchCourier(asLocal(local), remote.fn, isOurs);
    const results = await courier.deliver(ITEM, refs("a@far.test", "b@far.test"), open);
    assert.equal(local.calls.length, 0);
    assert.equal(remote.calls.length, 1);
    assert.equal(results.length, 2);
  });

  it("deliver() returns no results and calls nothing for no recipients", async () => {
    const local = new FakeLocal();
    const remote = fakeRemote();
    const courier = new DispatchCourier(asLocal(local), remote.fn, isOurs);
    assert.deepEqual(await courier.deliver(ITEM, [], open), []);
    assert.equal(local.calls.length, 0);
    assert.equal(remote.calls.length, 0);
  });

  it("deliver() delivers local recipients one after the other", async () => {
    const local = new FakeLocal(5);
    const courier = new DispatchCourier(asLocal(local), fakeRemote().fn, isOurs);
    await courier.deliver(ITEM, refs("a@ours.test", "b@ours.test", "c@ours.test"), open);
    assert.equal(local.calls.length, 3);
    assert.equal(local.maxActive, 1);
    assert.deepEqual(local.calls.map((c) => c.address), [
      "a@ours.test",
      "b@ours.test",
      "c@ours.test",
    ]);
  });

  it("deliver() runs remote delivery while local recipients are delivered", async () => {
    const gate = deferred<void>();
    let remoteStarted = false;
    const local = {
      async deliver(): Promise<DeliveryResult> {
        // The local delivery only ends once remote delivery has begun.
        await gate.promise;
        return { status: "sent", detail: "local" };
      },
    };
    const remote: RemoteDelivery = (_item, recipients) => {
      remoteStarted = true;
      gate.resolve();
      return Promise.resolve(recipients.map(() => ({ status: "sent", detail: "remote" })));
    };
    const courier = new DispatchCourier(asLocal(local), remote, isOurs);
    const results = await courier.deliver(ITEM, refs("a@ours.test", "b@far.test"), open);
    assert.equal(remoteStarted, true);
    assert.deepEqual(results.map((r) => r.status), ["sent", "sent"]);
  });

  it("deliver() keeps each result with its recipient when they differ", async () => {
    const local = {
      deliver(_item: SpoolItem, recipient: { address: string }): Promise<DeliveryResult> {
        return Promise.resolve(
          recipient.address.startsWith("gone")
            ? { status: "failed", error: "5.1.1 no such user" }
            : { status: "sent", detail: "maildir" },
        );
      },
    };
    const remote: RemoteDelivery = (_item, recipients) =>
      Promise.resolve(
        recipients.map((r): DeliveryResult =>
          r.address.startsWith("slow")
            ? { status: "deferred", error: "4.2.1 try later", remoteMta: "mx.far.test" }
            : { status: "sent", detail: "250 ok" }
        ),
      );
    const courier = new DispatchCourier(asLocal(local), remote, isOurs);
    const results = await courier.deliver(
      ITEM,
      refs("slow@far.test", "gone@ours.test", "fast@far.test", "here@ours.test"),
      open,
    );
    assert.deepEqual(results, [
      { status: "deferred", error: "4.2.1 try later", remoteMta: "mx.far.test" },
      { status: "failed", error: "5.1.1 no such user" },
      { status: "sent", detail: "250 ok" },
      { status: "sent", detail: "maildir" },
    ]);
  });

  it("deliver() never rejects (Courier contract), even when remote delivery throws", async () => {
    // The local recipient is delivered before remote delivery fails, so the
    // results must keep that "sent": a rejection would lose it and the
    // queue would deliver it again on the retry.
    const local = new FakeLocal(0);
    const remote: RemoteDelivery = async () => {
      await new Promise((r) => setTimeout(r, 20));
      throw new Error("resolver exploded");
    };
    const courier = new DispatchCourier(asLocal(local), remote, isOurs);
    const outcome = await courier.deliver(ITEM, refs("a@ours.test", "b@far.test"), open)
      .then((results) => ({ results }), (error: unknown) => ({ error }));
    assert.equal(local.calls.length, 1);
    if ("error" in outcome) assert.fail(`deliver() rejected: ${String(outcome.error)}`);
    assert.deepEqual(outcome.results[0], { status: "sent", detail: "local:a@ours.test" });
    assert.equal(outcome.results[1]?.status, "deferred");
  });
});
