import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SlidingLog } from "../../../src/smtp/sliding_log.ts";

const WINDOW = 60_000;

/** A clock the test moves by hand. */
function fakeClock(start = 0) {
  const clock = { now: start, read: () => clock.now };
  return clock;
}

describe("SlidingLog", () => {
  it("counts each event until it is a window old, exactly", () => {
    const clock = fakeClock(5_000);
    const log = new SlidingLog(WINDOW, clock.read);
    log.add("a", 10);
    clock.now = 5_000 + WINDOW / 2;
    log.add("a", 10);
    assert.equal(log.count("a"), 2);
    clock.now = 5_000 + WINDOW - 1;
    assert.equal(log.count("a"), 2);
    clock.now = 5_000 + WINDOW;
    assert.equal(log.count("a"), 1, "the first is a window old");
    clock.now = 5_000 + WINDOW / 2 + WINDOW;
    assert.equal(log.count("a"), 0);
    assert.equal(log.size, 0, "a key with nothing left is forgotten");
    assert.equal(log.held, 0);
    assert.equal(log.count("never"), 0);
  });

  it("keeps only the newest `keep` events of a key", () => {
    const clock = fakeClock();
    const log = new SlidingLog(WINDOW, clock.read);
    for (let i = 0; i < 25; i++, clock.now += 1_000) log.add("a", 10);
    assert.equal(log.count("a"), 10);
    assert.equal(log.held, 10);
    // The 10 kept are the newest: times 15 s to 24 s; the oldest leaves at 75 s.
    clock.now = 15_000 + WINDOW - 1;
    assert.equal(log.count("a"), 10);
    clock.now = 15_000 + WINDOW;
    assert.equal(log.count("a"), 9);
    log.add("b", 0);
    assert.equal(log.count("b"), 1, "at least one is kept");
  });

  it("keeps each key apart", () => {
    const log = new SlidingLog(WINDOW, fakeClock().read);
    log.add("a", 5);
    log.add("a", 5);
    log.add("b", 5);
    assert.equal(log.count("a"), 2);
    assert.equal(log.count("b"), 1);
    assert.equal(log.size, 2);
  });

  it("stays bounded at 100000 keys under a flood of new keys, least recently used first", () => {
    const log = new SlidingLog(WINDOW, fakeClock().read);
    log.add("busy", 5);
    log.add("quiet", 5);
    for (let i = 0; i < 50_000; i++) log.add(`k${i}`, 5);
    assert.equal(log.count("busy"), 1); // asked about: now the most recent
    for (let i = 50_000; i < 100_005; i++) log.add(`k${i}`, 5);
    assert.ok(log.size <= 100_000, `size ${log.size}`);
    assert.ok(log.size >= 99_999, `size ${log.size}`);
    assert.equal(log.count("busy"), 1, "a recently used key keeps its events");
    assert.equal(log.count("quiet"), 0, "the least recently used key was forgotten");
  });

  it("holds at most a million times in all, however large the limit", () => {
    const clock = fakeClock();
    const log = new SlidingLog(WINDOW, clock.read);
    // 2000 keys of 600 events each: 1.2 million without the bound.
    for (let k = 0; k < 2_000; k++) {
      for (let i = 0; i < 600; i++) log.add(`k${k}`, 1_000);
    }
    assert.ok(log.held <= 1_000_000, `held ${log.held}`);
    assert.ok(log.held > 999_000, `held ${log.held}`);
    assert.equal(log.count("k1999"), 600, "the newest key is whole");
    assert.equal(log.count("k0"), 0, "the oldest keys went first");
  });

  it("sweeps keys idle for a window, so memory falls back without being asked", () => {
    const clock = fakeClock();
    const log = new SlidingLog(WINDOW, clock.read);
    for (let i = 0; i < 1_000; i++) log.add(`k${i}`, 3);
    assert.equal(log.size, 1_000);
    clock.now = WINDOW + 1;
    log.add("new", 3);
    assert.equal(log.size, 1);
    assert.equal(log.held, 1);
  });
});
