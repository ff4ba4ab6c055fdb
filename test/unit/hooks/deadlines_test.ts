import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Deadlines } from "../../../src/hooks/deadlines.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("Deadlines", () => {
  it("expires a call that is not cleared within the limit, once", async () => {
    const deadlines = new Deadlines(30);
    let expired = 0;
    deadlines.start(() => expired++);
    await sleep(10);
    assert.equal(expired, 0);
    await sleep(60);
    assert.equal(expired, 1);
    await sleep(40);
    assert.equal(expired, 1);
    assert.equal(deadlines.open, 0);
  });

  it("does not expire a cleared call", async () => {
    const deadlines = new Deadlines(20);
    let expired = 0;
    const deadline = deadlines.start(() => expired++);
    deadline.clear();
    await sleep(50);
    assert.equal(expired, 0);
  });

  it("expires later calls at their own time after an earlier one is cleared", async () => {
    const clock = { now: 0 };
    const deadlines = new Deadlines(40, () => clock.now);
    const expired: string[] = [];
    const first = deadlines.start(() => expired.push("first"));
    clock.now = 25;
    deadlines.start(() => expired.push("second"));
    first.clear();
    // The timer was armed for the first call's limit (40); at that time the
    // second is not yet due (65), so it must be re-armed, not expired early.
    clock.now = 41;
    await sleep(60);
    assert.deepEqual(expired, []);
    assert.equal(deadlines.open, 1);
    clock.now = 66;
    await sleep(50);
    assert.deepEqual(expired, ["second"]);
  });

  it("expires the calls that are due in start order and keeps the rest", async () => {
    const clock = { now: 0 };
    const deadlines = new Deadlines(30, () => clock.now);
    const expired: number[] = [];
    for (let i = 0; i < 5; i++) {
      clock.now = i;
      const deadline = deadlines.start(() => expired.push(i));
      if (i === 2) deadline.clear();
    }
    clock.now = 33;
    await sleep(50);
    assert.deepEqual(expired, [0, 1, 3]);
    assert.equal(deadlines.open, 1);
    clock.now = 40;
    await sleep(30);
    assert.deepEqual(expired, [0, 1, 3, 4]);
  });

  it("holds only the calls from the oldest open one on, however many finish", () => {
    const deadlines = new Deadlines(60_000);
    const old = deadlines.start(() => {});
    for (let i = 0; i < 10_000; i++) deadlines.start(() => {}).clear();
    assert.equal(deadlines.open, 1);
    old.clear();
    assert.equal(deadlines.open, 0);
    deadlines.close();
  });

  it("close() stops every expiry", async () => {
    const deadlines = new Deadlines(20);
    let expired = 0;
    deadlines.start(() => expired++);
    deadlines.close();
    await sleep(50);
    assert.equal(expired, 0);
  });
});
