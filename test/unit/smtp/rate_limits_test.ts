import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  clientKey,
  RateLimits,
  type RateLimitSettings,
  SlidingWindowCounter,
} from "../../../src/smtp/rate_limits.ts";

const WINDOW = 60_000;

/** A clock the test moves by hand. */
function fakeClock(start = 0) {
  const clock = { now: start, read: () => clock.now };
  return clock;
}

/** Hits `key` `times` times and returns how many were allowed. */
function hits(counter: SlidingWindowCounter, key: string, limit: number, times: number): number {
  let allowed = 0;
  for (let i = 0; i < times; i++) if (counter.hit(key, limit)) allowed++;
  return allowed;
}

const LIMITS: RateLimitSettings = {
  connectionsPerIpPerMinute: 3,
  messagesPerIpPerHour: 2,
  messagesPerUserPerHour: 2,
  failedLoginsPerIpPerHour: 2,
};

describe("SlidingWindowCounter", () => {
  it("hit() allows up to the limit within a window and then refuses", () => {
    const clock = fakeClock();
    const counter = new SlidingWindowCounter(WINDOW, clock.read);
    assert.equal(counter.hit("a", 3), true);
    assert.equal(counter.hit("a", 3), true);
    assert.equal(counter.hit("a", 3), true);
    assert.equal(counter.hit("a", 3), false);
    clock.now = WINDOW - 1;
    assert.equal(counter.hit("a", 3), false);
  });

  it("hit() counts each key on its own", () => {
    const counter = new SlidingWindowCounter(WINDOW, fakeClock().read);
    assert.equal(hits(counter, "a", 2, 5), 2);
    assert.equal(hits(counter, "b", 2, 5), 2);
    assert.equal(counter.size, 2);
  });

  it("hit() does not count refused events", () => {
    const clock = fakeClock();
    const counter = new SlidingWindowCounter(WINDOW, clock.read);
    assert.equal(hits(counter, "a", 3, 3), 3);
    assert.equal(hits(counter, "a", 3, 100), 0);
    // Half of the previous window still counts: 3 * 0.5 = 1.5, so 1 more
    // event (2.5) is allowed and a second (3.5) is not. Had the 100
    // refusals been counted, nothing would be.
    clock.now = WINDOW + WINDOW / 2;
    assert.equal(hits(counter, "a", 3, 10), 2);
  });

  it("hit() with a limit of 0 (or less) allows everything and counts nothing", () => {
    const counter = new SlidingWindowCounter(WINDOW, fakeClock().read);
    assert.equal(hits(counter, "a", 0, 1000), 1000);
    assert.equal(hits(counter, "b", -1, 10), 10);
    assert.equal(counter.size, 0);
    // Nothing was counted: a limit switched on later starts from zero.
    assert.equal(hits(counter, "a", 2, 5), 2);
  });

  it("hit() weighs the previous window by how much of it is still within the window", () => {
    const clock = fakeClock();
    const counter = new SlidingWindowCounter(WINDOW, clock.read);
    assert.equal(hits(counter, "a", 10, 10), 10);
    assert.equal(counter.hit("a", 10), false);
    // At the start of the next window the whole previous window counts.
    clock.now = WINDOW;
    assert.equal(counter.hit("a", 10), false);
    // Half way through it, half of it does: about 5 more are allowed.
    clock.now = WINDOW + WINDOW / 2;
    assert.equal(hits(counter, "a", 10, 20), 5);
  });

  it("hit() has no burst of twice the limit at a window boundary", () => {
    const clock = fakeClock();
    const counter = new SlidingWindowCounter(WINDOW, clock.read);
    clock.now = WINDOW - 1;
    assert.equal(hits(counter, "a", 10, 10), 10);
    // Just past the boundary nearly all of the previous window still counts:
    // at most one more (rounding), not another 10.
    clock.now = WINDOW + 1;
    const justPast = hits(counter, "a", 10, 20);
    assert.ok(justPast <= 1, `${justPast} allowed just past the boundary`);
    // A tenth into the window 9 of the previous 10 count: 1 more in all.
    clock.now = WINDOW + WINDOW / 10;
    assert.equal(justPast + hits(counter, "a", 10, 20), 1);
  });

  it("hit() forgets the previous window once it lies wholly outside the window", () => {
    const clock = fakeClock();
    const counter = new SlidingWindowCounter(WINDOW, clock.read);
    assert.equal(hits(counter, "a", 10, 10), 10);
    clock.now = 2 * WINDOW;
    assert.equal(hits(counter, "a", 10, 20), 10);
  });

  it("keys idle for two windows are forgotten", () => {
    const clock = fakeClock();
    const counter = new SlidingWindowCounter(WINDOW, clock.read);
    for (let i = 0; i < 50; i++) counter.hit(`idle-${i}`, 5);
    assert.equal(counter.size, 50);
    clock.now = WINDOW;
    counter.hit("recent", 5);
    assert.equal(counter.size, 51, "one window of idleness is not enough");
    clock.now = 2 * WINDOW;
    counter.hit("new", 5);
    assert.equal(counter.size, 2);
    clock.now = 4 * WINDOW;
    counter.hit("newest", 5);
    assert.equal(counter.size, 1);
  });

  it("size stays bounded by 100000 keys under a flood of new keys", () => {
    const counter = new SlidingWindowCounter(WINDOW, fakeClock().read);
    for (let i = 0; i < 100_005; i++) counter.hit(`k${i}`, 5);
    assert.ok(counter.size <= 100_000, `size ${counter.size}`);
    assert.ok(counter.size >= 99_999, `size ${counter.size}`);
  });

  it("under the key bound the least recently used keys are forgotten first", () => {
    const counter = new SlidingWindowCounter(WINDOW, fakeClock().read);
    assert.equal(hits(counter, "busy", 2, 2), 2);
    assert.equal(hits(counter, "quiet", 2, 2), 2);
    for (let i = 0; i < 50_000; i++) counter.hit(`k${i}`, 5);
    assert.equal(counter.hit("busy", 2), false); // used again: now the most recent
    for (let i = 50_000; i < 100_005; i++) counter.hit(`k${i}`, 5);
    assert.equal(counter.hit("busy", 2), false, "a recently used key keeps its count");
    assert.equal(counter.hit("quiet", 2), true, "the least recently used key was forgotten");
  });
});

describe("RateLimits", () => {
  it("admitConnection() counts connections per address and refuses with 421 4.7.0", () => {
    const clock = fakeClock();
    const limits = new RateLimits(clock.read);
    for (let i = 0; i < 3; i++) {
      assert.equal(limits.admitConnection("192.0.2.1", LIMITS), undefined);
    }
    const refusal = limits.admitConnection("192.0.2.1", LIMITS);
    assert.ok(refusal);
    assert.equal(refusal.reason, "connection_rate");
    assert.equal(refusal.reply.code, 421);
    assert.equal(refusal.reply.enhanced, "4.7.0");
    assert.equal(limits.admitConnection("192.0.2.2", LIMITS), undefined);
    clock.now = 2 * 60_000;
    assert.equal(limits.admitConnection("192.0.2.1", LIMITS), undefined);
  });

  it("admitConnection() with the limit switched off admits everything", () => {
    const limits = new RateLimits(fakeClock().read);
    const off = { ...LIMITS, connectionsPerIpPerMinute: 0 };
    for (let i = 0; i < 100; i++) assert.equal(limits.admitConnection("192.0.2.1", off), undefined);
  });

  it("admitConnection() counts a whole IPv6 /64 as one client", () => {
    const limits = new RateLimits(fakeClock().read);
    for (let i = 1; i <= 3; i++) {
      assert.equal(limits.admitConnection(`2001:db8:1:2::${i}`, LIMITS), undefined);
    }
    assert.equal(limits.admitConnection("2001:db8:1:2:ffff::9", LIMITS)?.reason, "connection_rate");
    assert.equal(limits.admitConnection("2001:db8:1:3::1", LIMITS), undefined);
  });

  it("admitMessage() counts messages per address and defers with 451 4.7.1", () => {
    const limits = new RateLimits(fakeClock().read);
    assert.equal(limits.admitMessage("192.0.2.1", undefined, LIMITS), undefined);
    assert.equal(limits.admitMessage("::ffff:192.0.2.1", undefined, LIMITS), undefined);
    const refusal = limits.admitMessage("192.0.2.1", undefined, LIMITS);
    assert.ok(refusal);
    assert.equal(refusal.reason, "message_rate");
    assert.equal(refusal.reply.code, 451);
    assert.equal(refusal.reply.enhanced, "4.7.1");
    assert.equal(limits.admitMessage("192.0.2.2", undefined, LIMITS), undefined);
  });

  it("admitMessage() counts an authenticated user case-insensitively", () => {
    const limits = new RateLimits(fakeClock().read);
    assert.equal(limits.admitMessage("192.0.2.1", "Alice@Example.org", LIMITS), undefined);
    assert.equal(limits.admitMessage("198.51.100.7", "alice@example.org", LIMITS), undefined);
    const refusal = limits.admitMessage("203.0.113.9", "ALICE@EXAMPLE.ORG", LIMITS);
    assert.ok(refusal);
    assert.equal(refusal.reason, "user_message_rate");
    assert.equal(refusal.reply.code, 451);
    assert.equal(refusal.reply.enhanced, "4.7.1");
    assert.equal(limits.admitMessage("192.0.2.1", "bob@example.org", LIMITS), undefined);
  });

  it("admitMessage() counts users separately from addresses", () => {
    const limits = new RateLimits(fakeClock().read);
    // The user's messages do not use up the address's allowance...
    assert.equal(limits.admitMessage("192.0.2.1", "alice", LIMITS), undefined);
    assert.equal(limits.admitMessage("192.0.2.1", "alice", LIMITS), undefined);
    assert.equal(limits.admitMessage("192.0.2.1", "alice", LIMITS)?.reason, "user_message_rate");
    assert.equal(limits.admitMessage("192.0.2.1", undefined, LIMITS), undefined);
    assert.equal(limits.admitMessage("192.0.2.1", undefined, LIMITS), undefined);
    assert.equal(limits.admitMessage("192.0.2.1", undefined, LIMITS)?.reason, "message_rate");
    // ...and an address at its limit does not stop an authenticated user.
    assert.equal(limits.admitMessage("192.0.2.1", "bob", LIMITS), undefined);
  });

  it("admitMessage() with the limits switched off admits everything", () => {
    const limits = new RateLimits(fakeClock().read);
    const off = { ...LIMITS, messagesPerIpPerHour: 0, messagesPerUserPerHour: 0 };
    for (let i = 0; i < 50; i++) {
      assert.equal(limits.admitMessage("192.0.2.1", undefined, off), undefined);
      assert.equal(limits.admitMessage("192.0.2.1", "alice", off), undefined);
    }
  });

  it("admitMessage() counts over an hour, not a minute", () => {
    const clock = fakeClock();
    const limits = new RateLimits(clock.read);
    limits.admitMessage("192.0.2.1", undefined, LIMITS);
    limits.admitMessage("192.0.2.1", undefined, LIMITS);
    clock.now = 10 * 60_000;
    assert.ok(limits.admitMessage("192.0.2.1", undefined, LIMITS));
    clock.now = 2 * 3_600_000;
    assert.equal(limits.admitMessage("192.0.2.1", undefined, LIMITS), undefined);
  });

  it("the limits in force at each call apply, and counts survive a change of limits", () => {
    const limits = new RateLimits(fakeClock().read);
    for (let i = 0; i < 3; i++) {
      assert.equal(limits.admitConnection("192.0.2.1", LIMITS), undefined);
    }
    assert.ok(limits.admitConnection("192.0.2.1", LIMITS));
    const raised = { ...LIMITS, connectionsPerIpPerMinute: 5 };
    assert.equal(limits.admitConnection("192.0.2.1", raised), undefined);
    assert.equal(limits.admitConnection("192.0.2.1", raised), undefined);
    assert.ok(limits.admitConnection("192.0.2.1", raised));
  });
});

describe("clientKey", () => {
  it("clientKey() leaves an IPv4 address unchanged", () => {
    assert.equal(clientKey("192.0.2.1"), "192.0.2.1");
    assert.equal(clientKey("10.0.0.255"), "10.0.0.255");
  });

  it("clientKey() unwraps an IPv4-mapped IPv6 address", () => {
    assert.equal(clientKey("::ffff:1.2.3.4"), "1.2.3.4");
    assert.equal(clientKey("::FFFF:1.2.3.4"), "1.2.3.4");
  });

  it("clientKey() gives addresses of the same IPv6 /64 the same key", () => {
    const key = clientKey("2001:db8:1:2::1");
    assert.equal(clientKey("2001:db8:1:2:ffff::9"), key);
    assert.equal(clientKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), key);
    assert.equal(clientKey("2001:0db8:0001:0002::1"), key);
    assert.equal(clientKey("2001:DB8:1:2::42"), key);
    assert.equal(key, "2001:db8:1:2::/64");
  });

  it("clientKey() gives different IPv6 /64s different keys", () => {
    assert.notEqual(clientKey("2001:db8:1:2::1"), clientKey("2001:db8:1:3::1"));
    assert.notEqual(clientKey("2001:db8:1:2::1"), clientKey("2001:db9:1:2::1"));
    assert.notEqual(clientKey("2001:db8::1"), clientKey("2001:db8:0:1::1"));
  });

  it("clientKey() expands compressed IPv6 forms", () => {
    assert.equal(clientKey("::1"), "0:0:0:0::/64");
    assert.equal(clientKey("::"), "0:0:0:0::/64");
    assert.equal(clientKey("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(clientKey("2001:db8::1"), clientKey("2001:db8:0:0:1::"));
    assert.equal(clientKey("fe80::"), "fe80:0:0:0::/64");
    assert.equal(clientKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  });

  it("clientKey() keys IPv6 addresses apart from IPv4 ones", () => {
    assert.notEqual(clientKey("::1"), clientKey("127.0.0.1"));
    assert.ok(clientKey("2001:db8::1").endsWith("::/64"));
  });
});
