/**
 * Deadlines on a clock the test moves: whether a call has expired depends
 * on how far the test moved the time, never on how fast the machine is.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Deadlines } from "../../../src/hooks/deadlines.ts";
import { ManualClock } from "./manual_clock.ts";

describe("Deadlines", () => {
  it("expires a call that is not cleared within the limit, once, and not a moment before", () => {
    const clock = new ManualClock();
    const deadlines = new Deadlines(30, clock);
    let expired = 0;
    deadlines.start(() => expired++);
    clock.advance(29);
    assert.equal(expired, 0);
    assert.equal(deadlines.open, 1);
    clock.advance(1);
    assert.equal(expired, 1);
    clock.advance(1000);
    assert.equal(expired, 1);
    assert.equal(deadlines.open, 0);
    assert.equal(clock.armed, 0, "no timer is left for a queue with nothing open");
  });

  it("does not expire a cleared call", () => {
    const clock = new ManualClock();
    const deadlines = new Deadlines(20, clock);
    let expired = 0;
    const deadline = deadlines.start(() => expired++);
    deadline.clear();
    clock.advance(1000);
    assert.equal(expired, 0);
  });

  it("expires later calls at their own time after an earlier one is cleared", () => {
    const clock = new ManualClock();
    const deadlines = new Deadlines(40, clock);
    const expired: string[] = [];
    const first = deadlines.start(() => expired.push("first"));
    clock.advance(25);
    deadlines.start(() => expired.push("second"));
    first.clear();
    // The timer was armed for the first call's limit (40); at that time the
    // second is not yet due (65), so it must be re-armed, not expired early.
    clock.advance(16);
    assert.deepEqual(expired, []);
    assert.equal(deadlines.open, 1);
    clock.advance(23);
    assert.deepEqual(expired, [], "at 64 the second is not due yet");
    clock.advance(1);
    assert.deepEqual(expired, ["second"]);
  });

  it("expires the calls that are due in start order and keeps the rest", () => {
    const clock = new ManualClock();
    const deadlines = new Deadlines(30, clock);
    const expired: number[] = [];
    for (let i = 0; i < 5; i++) {
      const deadline = deadlines.start(() => expired.push(i));
      if (i === 2) deadline.clear();
      if (i < 4) clock.advance(1);
    }
    // Started at 0, 1, 2 (cleared), 3 and 4: due at 30, 31, 33 and 34.
    clock.advance(29); // to 33
    assert.deepEqual(expired, [0, 1, 3]);
    assert.equal(deadlines.open, 1);
    clock.advance(1);
    assert.deepEqual(expired, [0, 1, 3, 4]);
  });

  it("holds only the calls from the oldest open one on, however many finish", () => {
    const deadlines = new Deadlines(60_000, new ManualClock());
    const old = deadlines.start(() => {});
    for (let i = 0; i < 10_000; i++) deadlines.start(() => {}).clear();
    assert.equal(deadlines.open, 1);
    old.clear();
    assert.equal(deadlines.open, 0);
    deadlines.close();
  });

  it("close() stops every expiry and disarms the timer", () => {
    const clock = new ManualClock();
    const deadlines = new Deadlines(20, clock);
    let expired = 0;
    deadlines.start(() => expired++);
    deadlines.close();
    assert.equal(clock.armed, 0);
    clock.advance(1000);
    assert.equal(expired, 0);
  });

  it("runs on the real clock by default", async () => {
    // Only that real time expires a call at all, however late: when it does
    // is what the tests above pin down.
    const deadlines = new Deadlines(1);
    const expired = new Promise<string>((resolve) => deadlines.start(() => resolve("expired")));
    // The deadline's timer is unreferenced: alone, it would let deno end
    // the test before it fires.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      assert.equal(await expired, "expired");
    } finally {
      clearInterval(keepAlive);
    }
  });
});
