/**
 * Tests of the renewal schedule: two thirds of the lifetime, the ARI
 * window (RFC 9773), and the backoff after failures.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffMs, MAX_BACKOFF_MS, renewalTime } from "../../../src/tls/renewal.ts";

const DAY = 86_400_000;

describe("renewalTime()", () => {
  const cert = { notBefore: 0, notAfter: 90 * DAY };

  it("renews when two thirds of the lifetime are gone, without ARI", () => {
    assert.equal(renewalTime(cert, undefined, 10 * DAY), 60 * DAY);
  });

  it("picks a moment inside the ARI window", () => {
    const window = { start: 30 * DAY, end: 32 * DAY, retryAfter: undefined };
    assert.equal(renewalTime(cert, window, 10 * DAY, () => 0), 30 * DAY);
    assert.equal(renewalTime(cert, window, 10 * DAY, () => 0.5), 31 * DAY);
    for (let i = 0; i < 100; i++) {
      const at = renewalTime(cert, window, 10 * DAY);
      assert.ok(at >= 30 * DAY && at < 32 * DAY, String(at));
    }
  });

  it("renews at once when the ARI window has passed, and from now when inside it", () => {
    const past = { start: 1 * DAY, end: 2 * DAY, retryAfter: undefined };
    assert.equal(renewalTime(cert, past, 10 * DAY), 10 * DAY);
    const open = { start: 5 * DAY, end: 15 * DAY, retryAfter: undefined };
    assert.equal(renewalTime(cert, open, 10 * DAY, () => 0), 10 * DAY);
  });
});

describe("backoffMs()", () => {
  it("doubles from the first delay up to six hours", () => {
    assert.deepEqual([1, 2, 3, 4].map((n) => backoffMs(n, 60_000)), [
      60_000,
      120_000,
      240_000,
      480_000,
    ]);
    assert.equal(backoffMs(40, 60_000), MAX_BACKOFF_MS);
  });
});
