import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isQueueId, newQueueId } from "../../../src/queue/mod.ts";

describe("newQueueId", () => {
  it("newQueueId() makes 16 lower-case characters that isQueueId() accepts", () => {
    for (let i = 0; i < 100; i++) {
      const id = newQueueId();
      assert.equal(id.length, 16);
      assert.match(id, /^[0-9a-z]{16}$/);
      assert.equal(isQueueId(id), true);
    }
  });

  it("newQueueId() encodes the injected time in the first 10 characters", () => {
    assert.equal(newQueueId(0).slice(0, 10), "0000000000");
    assert.equal(newQueueId(31).slice(0, 10), "000000000z");
    assert.equal(newQueueId(32).slice(0, 10), "0000000010");
    const a = newQueueId(1_700_000_000_000);
    const b = newQueueId(1_700_000_000_000);
    assert.equal(a.slice(0, 10), b.slice(0, 10));
  });

  it("newQueueId() sorts by time when the times differ", () => {
    const times = [0, 1, 31, 32, 1000, 1_700_000_000_000, 1_700_000_000_001, 4_102_444_800_000];
    const ids = times.map((t) => newQueueId(t));
    assert.deepEqual([...ids].sort(), ids);
    // Even the largest random tail of an earlier millisecond sorts first.
    assert.ok(
      newQueueId(1_700_000_000_000).slice(0, 10) + "zzzzzz" < newQueueId(1_700_000_000_001),
    );
  });

  it("newQueueId() avoids the letters i, l, o and u", () => {
    for (let i = 0; i < 200; i++) assert.doesNotMatch(newQueueId(i * 7919), /[ilou]/);
  });

  it("newQueueId() varies the random tail when called at the same time", () => {
    const ids = new Set(Array.from({ length: 50 }, () => newQueueId(1_700_000_000_000)));
    assert.ok(ids.size > 45, `only ${ids.size} distinct IDs out of 50`);
  });
});

describe("isQueueId", () => {
  it("isQueueId() rejects strings of the wrong length or with other characters", () => {
    assert.equal(isQueueId(""), false);
    assert.equal(isQueueId("0123456789abcde"), false);
    assert.equal(isQueueId("0123456789abcdefg"), false);
    assert.equal(isQueueId("0123456789ABCDEF"), false);
    assert.equal(isQueueId("../../etc/passwd"), false);
    assert.equal(isQueueId("0123456789abcd.f"), false);
  });
});
