/**
 * The exact failed-login count of a node against a hostile use: a client
 * at its limit that keeps trying through a flood of other clients stays
 * refused; a limit changed by a reload (raised, lowered, 0) applies at
 * once; a clock that goes backwards never lets more checks through.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LocalFailures } from "../../../src/smtp/login.ts";

function fakeClock(start = 0) {
  const clock = { now: start, read: () => clock.now };
  return clock;
}

/** Fails `n` password checks of `key` under `limit`; how many were let through. */
function fail(failures: LocalFailures, key: string, limit: number, n: number): number {
  let checked = 0;
  for (let i = 0; i < n; i++) {
    const ticket = failures.reserve(key, limit);
    if (!ticket) continue;
    checked++;
    void ticket.settle(true);
  }
  return checked;
}

describe("LocalFailures against a hostile use", () => {
  it("keeps refusing a client at its limit through a flood of 150000 other clients", () => {
    const clock = fakeClock(1_000);
    const failures = new LocalFailures(clock.read);
    assert.equal(fail(failures, "victim", 3, 10), 3);
    for (let i = 0; i < 150_000; i++) {
      fail(failures, `flood-${i}`, 3, 1);
      // The attacker retries now and then during the flood: still refused.
      if (i % 50_000 === 0) assert.equal(failures.reserve("victim", 3), undefined, `at ${i}`);
    }
    assert.ok(failures.size <= 100_000, `${failures.size} keys`);
    assert.equal(failures.reserve("victim", 3), undefined);
  });

  it("applies a limit raised, lowered, or set to 0 by a reload at once", () => {
    const clock = fakeClock(1_000);
    const failures = new LocalFailures(clock.read);
    assert.equal(fail(failures, "c", 3, 10), 3);
    assert.equal(fail(failures, "c", 5, 10), 2);
    assert.equal(fail(failures, "c", 2, 10), 0);
    // No limit: every check is let through, and still counted.
    assert.equal(fail(failures, "c", 0, 20), 20);
    assert.equal(fail(failures, "c", 50, 100), 25);
    clock.now += 3_600_000;
    assert.equal(fail(failures, "c", 3, 10), 3);
  });

  it("lets no more checks through when the clock goes backwards", () => {
    const clock = fakeClock(10 * 3_600_000);
    const failures = new LocalFailures(clock.read);
    assert.equal(fail(failures, "c", 3, 10), 3);
    clock.now -= 2 * 3_600_000;
    assert.equal(fail(failures, "c", 3, 10), 0);
    // Forward again in small steps, to an hour after the first failures.
    let checked = 0;
    for (let step = 0; step < 180; step++) {
      clock.now += 60_000;
      checked += fail(failures, "c", 3, 5);
    }
    assert.ok(checked <= 3, `${checked} checks in the hour after the failures`);
  });
});
