import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { REFUSAL_LINES_PER_SESSION, RefusalLog } from "../../../src/smtp/refusal_log.ts";

describe("RefusalLog", () => {
  it("RefusalLog gives a session's first refusals a line each and no summary", () => {
    const log = new RefusalLog();
    assert.equal(log.note("s1"), true);
    assert.equal(log.note("s1"), true);
    assert.equal(log.close("s1"), undefined);
  });

  it("RefusalLog counts refusals past the first few and sums them up at the close", () => {
    const log = new RefusalLog();
    const own = Array.from({ length: 50 }, () => log.note("s1"));
    assert.equal(own.filter(Boolean).length, REFUSAL_LINES_PER_SESSION);
    assert.ok(own.slice(0, REFUSAL_LINES_PER_SESSION).every(Boolean));
    // Another session has its own count.
    assert.equal(log.note("s2"), true);
    assert.deepEqual(log.close("s1"), { rejected: 50, unlogged: 50 - REFUSAL_LINES_PER_SESSION });
    assert.equal(log.close("s1"), undefined);
    assert.equal(log.close("s2"), undefined);
  });

  it("RefusalLog reports a session cut at the error limit, with its count and reply", () => {
    const log = new RefusalLog();
    log.note("s1");
    log.cut("s1", 20, "421 4.7.0 mx Error: too many errors");
    assert.deepEqual(log.close("s1"), {
      rejected: 1,
      unlogged: 0,
      cut: { errors: 20, reply: "421 4.7.0 mx Error: too many errors" },
    });
  });
});
