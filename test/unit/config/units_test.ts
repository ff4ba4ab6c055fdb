import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDuration, parseSize } from "../../../src/config/mod.ts";
import { checkDuration, formatDuration, TIMER_MAX_MS } from "../../../src/config/units.ts";

describe("parseSize", () => {
  it("parseSize() returns whole byte counts as they are", () => {
    assert.equal(parseSize(0), 0);
    assert.equal(parseSize(10485760), 10485760);
    assert.equal(parseSize("512"), 512);
    assert.equal(parseSize("512b"), 512);
  });

  it("parseSize() reads binary units when they are k, KiB, M, MiB, G, GiB", () => {
    assert.equal(parseSize("512k"), 512 * 1024);
    assert.equal(parseSize("2KiB"), 2048);
    assert.equal(parseSize("10M"), 10 * 1024 ** 2);
    assert.equal(parseSize("50MiB"), 50 * 1024 ** 2);
    assert.equal(parseSize("1g"), 1024 ** 3);
    assert.equal(parseSize("1GiB"), 1024 ** 3);
  });

  it("parseSize() reads decimal units when they are KB, MB, GB", () => {
    assert.equal(parseSize("2KB"), 2000);
    assert.equal(parseSize("10MB"), 10_000_000);
    assert.equal(parseSize("1gb"), 1_000_000_000);
  });

  it("parseSize() accepts fractions and spaces around the unit", () => {
    assert.equal(parseSize("1.5k"), 1536);
    assert.equal(parseSize(" 10 MiB "), 10 * 1024 ** 2);
  });

  it("parseSize() returns undefined when the input is not a size", () => {
    assert.equal(parseSize("lots"), undefined);
    assert.equal(parseSize("10QB"), undefined);
    assert.equal(parseSize(""), undefined);
    assert.equal(parseSize("-1"), undefined);
    assert.equal(parseSize("1e3"), undefined);
    assert.equal(parseSize(-1), undefined);
    assert.equal(parseSize(1.5), undefined);
    assert.equal(parseSize(Number.NaN), undefined);
    assert.equal(parseSize("99999999999999999999G"), undefined);
  });
});

describe("parseDuration", () => {
  it("parseDuration() reads each unit", () => {
    assert.equal(parseDuration("250ms"), 250);
    assert.equal(parseDuration("30s"), 30_000);
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("2h"), 7_200_000);
    assert.equal(parseDuration("5d"), 5 * 86_400_000);
  });

  it("parseDuration() adds up several parts in a row", () => {
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("1m500ms"), 60_500);
  });

  it("parseDuration() reads a bare number as seconds", () => {
    assert.equal(parseDuration("90"), 90_000);
    assert.equal(parseDuration("1.5"), 1500);
    assert.equal(parseDuration(0), 0);
    assert.equal(parseDuration(2), 2000);
    assert.equal(parseDuration(0.25), 250);
  });

  it("parseDuration() accepts fractions with a unit and surrounding spaces", () => {
    assert.equal(parseDuration("1.5s"), 1500);
    assert.equal(parseDuration("  2m  "), 120_000);
  });

  it("parseDuration() returns undefined when the input is not a duration", () => {
    assert.equal(parseDuration(""), undefined);
    assert.equal(parseDuration("soon"), undefined);
    assert.equal(parseDuration("5x"), undefined);
    assert.equal(parseDuration("5 m"), undefined);
    assert.equal(parseDuration("m5"), undefined);
    assert.equal(parseDuration("5m junk"), undefined);
    assert.equal(parseDuration("-5s"), undefined);
    assert.equal(parseDuration(-1), undefined);
    assert.equal(parseDuration(Number.POSITIVE_INFINITY), undefined);
  });
});

describe("durations that overflow", () => {
  const huge = "1" + "0".repeat(400);

  it("parseDuration() never returns a duration that is not a finite whole number of ms", () => {
    // 1e308 seconds is Infinity in milliseconds; so is a 400-digit text.
    assert.equal(parseDuration(1e308), undefined);
    assert.equal(parseDuration(huge), undefined);
    assert.equal(parseDuration(`${huge}d`), undefined);
    assert.equal(parseDuration(Number.MAX_SAFE_INTEGER), undefined);
  });

  it("checkDuration() tells a value longer than the maximum from one that is no duration", () => {
    assert.deepEqual(checkDuration("5m", TIMER_MAX_MS), { ok: true, ms: 300_000 });
    assert.deepEqual(checkDuration(TIMER_MAX_MS / 1000, TIMER_MAX_MS), {
      ok: true,
      ms: TIMER_MAX_MS,
    });
    assert.deepEqual(checkDuration("30d", TIMER_MAX_MS), { ok: false, problem: "too long" });
    assert.deepEqual(checkDuration(1e308, TIMER_MAX_MS), { ok: false, problem: "too long" });
    assert.deepEqual(checkDuration(huge, Number.MAX_SAFE_INTEGER), {
      ok: false,
      problem: "too long",
    });
    assert.deepEqual(checkDuration("soon", TIMER_MAX_MS), { ok: false, problem: "malformed" });
    assert.deepEqual(checkDuration(-1, TIMER_MAX_MS), { ok: false, problem: "malformed" });
  });

  it("formatDuration() writes a maximum as a duration that reads back the same", () => {
    assert.equal(formatDuration(TIMER_MAX_MS), "24d20h31m23.647s");
    assert.equal(parseDuration(formatDuration(TIMER_MAX_MS)), TIMER_MAX_MS);
    assert.equal(formatDuration(31_557_600_000), "365d6h");
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(0), "0s");
  });
});
