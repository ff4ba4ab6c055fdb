import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ErrorCounter,
  errorLimitReply,
  RECIPIENT_OVERSHOOT,
} from "../../../src/smtp/error_limit.ts";

describe("ErrorCounter", () => {
  it("ErrorCounter reaches the limit at the limit-th error reply", () => {
    const counter = new ErrorCounter(3);
    assert.equal(counter.count(250, "2.0.0 Ok"), false);
    assert.equal(counter.count(354, "Go ahead"), false);
    assert.equal(counter.count(550, "5.1.1 No such user here"), false);
    assert.equal(counter.count(500, "5.5.2 Error: command not recognized"), false);
    assert.equal(counter.count(451, "4.3.0 Local error"), true);
    assert.equal(counter.errors, 3);
  });

  it("ErrorCounter does not count 421, which ends the session anyway", () => {
    const counter = new ErrorCounter(1);
    assert.equal(counter.count(421, "4.4.2 timeout"), false);
    assert.equal(counter.errors, 0);
  });

  it("ErrorCounter counts 452 4.5.3 (too many recipients) only beyond the overshoot", () => {
    const counter = new ErrorCounter(2);
    for (let i = 0; i < RECIPIENT_OVERSHOOT; i++) {
      assert.equal(counter.count(452, "4.5.3 Too many recipients"), false);
    }
    assert.equal(counter.errors, 0);
    assert.equal(counter.count(452, "4.5.3 Too many recipients"), false);
    assert.equal(counter.count(452, "4.5.3 Too many recipients"), true);
    // Another 452 (storage) counts at once.
    const other = new ErrorCounter(1);
    assert.equal(other.count(452, "4.3.1 Insufficient system storage"), true);
  });

  it("ErrorCounter with a limit of 0 never ends the session", () => {
    const counter = new ErrorCounter(0);
    for (let i = 0; i < 100; i++) assert.equal(counter.count(550, "5.7.1 no"), false);
    assert.equal(counter.errors, 100);
  });

  it("errorLimitReply() is 421 4.7.0 with the host name", () => {
    assert.deepEqual(errorLimitReply("mx.example"), {
      code: 421,
      enhanced: "4.7.0",
      text: "mx.example Error: too many errors, closing connection",
    });
  });
});
