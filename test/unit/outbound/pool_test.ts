/**
 * Tests of the outbound connection pool: total and per-destination slot
 * limits, reuse of idle sessions, eviction of other destinations' idle
 * sessions, the order in which waiting deliveries are served, idle expiry,
 * and sessions that are no longer usable.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SmtpSession } from "../../../src/outbound/client.ts";
import { ConnectionPool, type Destination, type Lease } from "../../../src/outbound/pool.ts";
import { until } from "../helpers.ts";

/** The part of a session the pool looks at, with a record of close() calls. */
interface FakeSession {
  name: string;
  usable: boolean;
  closed: number;
  close(): void;
}

function fakeSession(name: string): FakeSession {
  const session: FakeSession = {
    name,
    usable: true,
    closed: 0,
    close() {
      session.closed++;
      session.usable = false;
    },
  };
  return session;
}

/**
 * A destination whose limit counts under `limitKey` (its own key unless
 * `deliver_as_if_to_domain` made it count as another domain).
 */
function dest(key: string, limit = 5, limitKey = key): Destination {
  return { key, limitKey, limit };
}

function asSession(fake: FakeSession): SmtpSession {
  return fake as unknown as SmtpSession;
}

/** Tracks whether a checkout has been granted yet. */
function track(promise: Promise<Lease>): { lease: Lease | undefined; done: Promise<Lease> } {
  const tracked: { lease: Lease | undefined; done: Promise<Lease> } = {
    lease: undefined,
    done: promise,
  };
  promise.then((lease) => {
    tracked.lease = lease;
  });
  return tracked;
}

/** Lets pending promise callbacks and a timer turn run. */
function settle(ms = 5): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const LONG_IDLE = 60_000;

describe("ConnectionPool", () => {
  it("checkout() grants a slot without a session while under the limits", async () => {
    const pool = new ConnectionPool(10, LONG_IDLE);
    assert.equal(pool.open, 0);
    const lease = await pool.checkout(dest("default\nex.test", 2));
    assert.deepEqual(lease, { session: undefined });
    assert.equal(pool.open, 1);
    pool.close();
  });

  it("checkout() waits at the per-destination limit and resumes when a slot is given back", async () => {
    const pool = new ConnectionPool(10, LONG_IDLE);
    await pool.checkout(dest("a", 2));
    await pool.checkout(dest("a", 2));
    const third = track(pool.checkout(dest("a", 2)));
    await settle();
    assert.equal(third.lease, undefined);
    assert.equal(pool.open, 2);
    // Another destination is not held back by the first one's limit.
    const other = await pool.checkout(dest("b", 2));
    assert.equal(other.session, undefined);
    assert.equal(pool.open, 3);

    pool.checkin(dest("a"), undefined);
    const lease = await third.done;
    assert.deepEqual(lease, { session: undefined });
    assert.equal(pool.open, 3);
    pool.close();
  });

  it("checkout() waits at the total limit whatever the destination", async () => {
    const pool = new ConnectionPool(2, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    await pool.checkout(dest("b", 5));
    const third = track(pool.checkout(dest("c", 5)));
    await settle();
    assert.equal(third.lease, undefined);
    assert.equal(pool.open, 2);
    pool.checkin(dest("b"), undefined);
    assert.deepEqual(await third.done, { session: undefined });
    assert.equal(pool.open, 2);
    pool.close();
  });

  it("checkout() reuses an idle session of the same destination without opening a slot", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const session = fakeSession("s1");
    pool.checkin(dest("a"), asSession(session));
    assert.equal(pool.open, 1, "an idle session still holds its slot");
    const lease = await pool.checkout(dest("a", 5));
    assert.equal(lease.session, asSession(session));
    assert.equal(pool.open, 1);
    assert.equal(session.closed, 0);
    pool.checkin(dest("a"), lease.session);
    pool.close();
    assert.equal(session.closed, 1);
  });

  it("checkout() hands out each idle session once, then opens new slots", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    await pool.checkout(dest("a", 5));
    const first = fakeSession("s1");
    const second = fakeSession("s2");
    pool.checkin(dest("a"), asSession(first));
    pool.checkin(dest("a"), asSession(second));
    const got = [await pool.checkout(dest("a", 5)), await pool.checkout(dest("a", 5))].map((l) =>
      l.session
    );
    assert.deepEqual(
      new Set(got),
      new Set([asSession(first), asSession(second)]),
      "both idle sessions are reused, each once",
    );
    assert.equal(pool.open, 2);
    const fresh = await pool.checkout(dest("a", 5));
    assert.equal(fresh.session, undefined);
    assert.equal(pool.open, 3);
    pool.close();
  });

  it("checkout() does not reuse an idle session of another destination", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    const lease = await pool.checkout(dest("b", 5));
    assert.equal(lease.session, undefined);
    assert.equal(pool.open, 2);
    assert.equal(session.closed, 0, "there was room: nothing needed evicting");
    pool.close();
  });

  it("an idle session counts against its destination's limit until reused", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    await pool.checkout(dest("a", 1));
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    // The only slot of "a" is the idle session, so a checkout takes it.
    const lease = await pool.checkout(dest("a", 1));
    assert.equal(lease.session, asSession(session));
    const next = track(pool.checkout(dest("a", 1)));
    await settle();
    assert.equal(next.lease, undefined);
    pool.checkin(dest("a"), undefined);
    assert.equal((await next.done).session, undefined);
    pool.close();
  });

  it("destinations that share a limit key share its limit", async () => {
    const pool = new ConnectionPool(10, LONG_IDLE);
    // Two domains whose deliveries count as one (deliver_as_if_to_domain).
    const first = dest("default\na.test", 1, "default\nlimit.test");
    const second = dest("default\nb.test", 1, "default\nlimit.test");
    await pool.checkout(first);
    const waiting = track(pool.checkout(second));
    await settle();
    assert.equal(waiting.lease, undefined);
    // A destination under its own limit key is not held back.
    assert.deepEqual(await pool.checkout(dest("default\nc.test", 1)), { session: undefined });
    pool.checkin(first, undefined);
    assert.deepEqual(await waiting.done, { session: undefined });
    pool.close();
  });

  it("an idle session is reused only by its own destination and limit key", async () => {
    const pool = new ConnectionPool(10, LONG_IDLE);
    const home = dest("default\nx.test", 5, "default\nx.test");
    const moved = dest("default\nx.test", 5, "default\nother.test");
    const sameLimit = dest("default\ny.test", 5, "default\nx.test");
    await pool.checkout(home);
    const session = fakeSession("x1");
    pool.checkin(home, asSession(session));
    assert.equal((await pool.checkout(moved)).session, undefined);
    assert.equal((await pool.checkout(sameLimit)).session, undefined);
    assert.equal((await pool.checkout(home)).session, asSession(session));
    assert.equal(pool.open, 3);
    pool.close();
  });

  it("an idle session under a shared limit key gives its slot to another destination at once", async () => {
    const pool = new ConnectionPool(10, LONG_IDLE);
    const first = dest("default\na.test", 1, "default\nlimit.test");
    const second = dest("default\nb.test", 1, "default\nlimit.test");
    await pool.checkout(first);
    const session = fakeSession("a1");
    pool.checkin(first, asSession(session));
    // The idle session of a.test holds the only slot of the shared limit:
    // it is closed rather than kept while b.test waits for its idle time.
    const waiting = track(pool.checkout(second));
    await settle();
    assert.deepEqual(waiting.lease, { session: undefined });
    assert.equal(session.closed, 1);
    assert.equal(pool.open, 1);
    pool.close();
  });

  it("checkout() closes another destination's idle session when the total is reached", async () => {
    const pool = new ConnectionPool(2, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    await pool.checkout(dest("b", 5));
    const idleA = fakeSession("a1");
    pool.checkin(dest("a"), asSession(idleA));
    const lease = await pool.checkout(dest("c", 5));
    assert.deepEqual(lease, { session: undefined });
    assert.equal(idleA.closed, 1, "the idle session of a was closed to make room");
    assert.equal(pool.open, 2);
    // The evicted session is gone: a checkout for "a" must wait for a slot.
    const forA = track(pool.checkout(dest("a", 5)));
    await settle();
    assert.equal(forA.lease, undefined);
    pool.checkin(dest("b"), undefined);
    assert.deepEqual(await forA.done, { session: undefined });
    pool.close();
  });

  it("a waiting delivery is served by evicting an idle session that is checked in", async () => {
    const pool = new ConnectionPool(1, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const waiting = track(pool.checkout(dest("b", 5)));
    await settle();
    assert.equal(waiting.lease, undefined);
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    assert.deepEqual(await waiting.done, { session: undefined });
    assert.equal(session.closed, 1);
    assert.equal(pool.open, 1);
    pool.close();
  });

  it("a session checked in goes at once to a delivery waiting for its destination", async () => {
    const pool = new ConnectionPool(1, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const waiting = track(pool.checkout(dest("a", 5)));
    await settle();
    assert.equal(waiting.lease, undefined);
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    const lease = await waiting.done;
    assert.equal(lease.session, asSession(session));
    assert.equal(session.closed, 0);
    assert.equal(pool.open, 1);
    pool.close();
  });

  it("waiting deliveries are served in arrival order as slots free", async () => {
    const pool = new ConnectionPool(1, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const order: string[] = [];
    const waiters = ["b", "c", "d"].map((key) =>
      pool.checkout(dest(key, 5)).then((lease) => {
        order.push(key);
        return lease;
      })
    );
    await settle();
    assert.deepEqual(order, []);

    pool.checkin(dest("a"), undefined);
    await waiters[0];
    await settle();
    assert.deepEqual(order, ["b"], "one slot freed, one delivery started");

    pool.checkin(dest("b"), undefined);
    await waiters[1];
    await settle();
    assert.deepEqual(order, ["b", "c"]);

    pool.checkin(dest("c"), undefined);
    await waiters[2];
    assert.deepEqual(order, ["b", "c", "d"]);
    assert.equal(pool.open, 1);
    pool.close();
  });

  it("a waiter blocked by its own destination's limit does not hold back later ones", async () => {
    const pool = new ConnectionPool(2, LONG_IDLE);
    await pool.checkout(dest("a", 1));
    await pool.checkout(dest("b", 1));
    const forA = track(pool.checkout(dest("a", 1)));
    const forC = track(pool.checkout(dest("c", 1)));
    await settle();
    assert.equal(forA.lease, undefined);
    assert.equal(forC.lease, undefined);
    // A slot of "b" frees: "a" is still at its own limit, so "c" gets it.
    pool.checkin(dest("b"), undefined);
    assert.deepEqual(await forC.done, { session: undefined });
    await settle();
    assert.equal(forA.lease, undefined);
    pool.checkin(dest("a"), undefined);
    assert.deepEqual(await forA.done, { session: undefined });
    pool.close();
  });

  it("an idle session is closed after idleMs and its slot freed", async () => {
    const pool = new ConnectionPool(5, 20);
    await pool.checkout(dest("a", 5));
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    assert.equal(pool.open, 1);
    await until(() => session.closed > 0);
    assert.equal(session.closed, 1);
    assert.equal(pool.open, 0);
    const lease = await pool.checkout(dest("a", 5));
    assert.equal(lease.session, undefined, "the expired session is not handed out");
    pool.close();
  });

  it("an idle session reused before idleMs is not closed by its expiry timer", async () => {
    const pool = new ConnectionPool(5, 30);
    await pool.checkout(dest("a", 5));
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    const lease = await pool.checkout(dest("a", 5));
    assert.equal(lease.session, asSession(session));
    await settle(80);
    assert.equal(session.closed, 0);
    assert.equal(pool.open, 1);
    pool.checkin(dest("a"), undefined);
    assert.equal(pool.open, 0);
    pool.close();
  });

  it("checkin() closes a session that is no longer usable and frees its slot", async () => {
    const pool = new ConnectionPool(1, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const waiting = track(pool.checkout(dest("a", 5)));
    await settle();
    const broken = fakeSession("a1");
    broken.usable = false;
    pool.checkin(dest("a"), asSession(broken));
    assert.equal(broken.closed, 1);
    const lease = await waiting.done;
    assert.equal(lease.session, undefined, "a waiter gets a fresh slot, not the broken session");
    assert.equal(pool.open, 1);
    pool.close();
  });

  it("checkin() without a session frees the slot", async () => {
    const pool = new ConnectionPool(3, LONG_IDLE);
    await pool.checkout(dest("a", 3));
    await pool.checkout(dest("a", 3));
    assert.equal(pool.open, 2);
    pool.checkin(dest("a"), undefined);
    assert.equal(pool.open, 1);
    pool.checkin(dest("a"), undefined);
    assert.equal(pool.open, 0);
    pool.close();
  });

  it("checkout() skips an idle session that stopped being usable while idle", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    await pool.checkout(dest("a", 1));
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    session.usable = false; // the server hung up meanwhile
    const lease = await pool.checkout(dest("a", 1));
    assert.equal(lease.session, undefined);
    assert.equal(pool.open, 1, "the dead session's slot was given back, then taken again");
    pool.checkin(dest("a"), undefined);
    assert.equal(pool.open, 0);
    pool.close();
  });

  it("setLimits() with a higher total starts waiting deliveries", async () => {
    const pool = new ConnectionPool(1, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    const waiting = track(pool.checkout(dest("b", 5)));
    await settle();
    assert.equal(waiting.lease, undefined);
    pool.setLimits(2, LONG_IDLE);
    assert.deepEqual(await waiting.done, { session: undefined });
    assert.equal(pool.open, 2);
    pool.close();
  });

  it("setLimits() changes how long sessions checked in afterwards stay idle", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    pool.setLimits(5, 20);
    await pool.checkout(dest("a", 5));
    const session = fakeSession("a1");
    pool.checkin(dest("a"), asSession(session));
    await until(() => session.closed > 0);
    assert.equal(pool.open, 0);
    pool.close();
  });

  it("checkout() opens no connection beyond a total lowered by setLimits()", async () => {
    const pool = new ConnectionPool(2, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    await pool.checkout(dest("b", 5));
    const idleA = fakeSession("a1");
    const idleB = fakeSession("b1");
    pool.checkin(dest("a"), asSession(idleA));
    pool.checkin(dest("b"), asSession(idleB));
    assert.equal(pool.open, 2);
    pool.setLimits(1, LONG_IDLE);
    const lease = await pool.checkout(dest("c", 5));
    assert.equal(lease.session, undefined);
    assert.ok(
      pool.open <= 1,
      `after the new slot for "c", ${pool.open} connections are open with a total limit of 1`,
    );
    pool.close();
  });

  it("close() closes idle sessions, and sessions checked in afterwards", async () => {
    const pool = new ConnectionPool(5, LONG_IDLE);
    await pool.checkout(dest("a", 5));
    await pool.checkout(dest("b", 5));
    const idle = fakeSession("a1");
    pool.checkin(dest("a"), asSession(idle));
    assert.equal(pool.open, 2);
    pool.close();
    assert.equal(idle.closed, 1);
    assert.equal(pool.open, 1, "the busy lease still counts until it comes back");
    const late = fakeSession("b1");
    pool.checkin(dest("b"), asSession(late));
    assert.equal(late.closed, 1);
    assert.equal(pool.open, 0);
  });
});
