/**
 * `statusOf()` and `statusWithClass()`: the enhanced status code (RFC 3463)
 * a DSN gives a recipient, taken from the reply or error text, with the
 * class set by whether the failure is permanent.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { statusOf, statusWithClass } from "../../../src/outbound/dsn.ts";

describe("statusOf", () => {
  it("statusOf() takes the enhanced code that follows the reply code", () => {
    assert.equal(statusOf("550 5.1.1 User unknown", true), "5.1.1");
    assert.equal(statusOf("550 5.1.1 User unknown", false), "4.1.1");
    assert.equal(statusOf("552-5.2.2 Mailbox full\r\n552 5.2.2 Try later", true), "5.2.2");
    assert.equal(statusOf("451 4.7.1 Greylisted", false), "4.7.1");
  });

  it("statusOf() gives the class `permanent` says, keeping subject and detail (RFC 3464 2.3.4)", () => {
    assert.equal(statusOf("451 4.4.2 Connection dropped", true), "5.4.2");
    // A hook pause "#5.7.1", or a 4xx reply that quotes a 5.x.x code: a delay, so 4.7.1.
    assert.equal(statusOf("Paused by policy #5.7.1", false), "4.7.1");
    assert.equal(statusOf("451 see 5.7.1 for details", false), "4.7.1");
  });

  it("statusWithClass() sets the class and keeps the rest; a malformed status gets x.0.0", () => {
    assert.equal(statusWithClass("5.7.1", false), "4.7.1");
    assert.equal(statusWithClass("4.2.2", true), "5.2.2");
    assert.equal(statusWithClass("5.4.7", true), "5.4.7");
    assert.equal(statusWithClass("garbage", false), "4.0.0");
  });

  it("statusOf() falls back by `permanent` when the reply has no enhanced code", () => {
    assert.equal(statusOf("421 Service not available", false), "4.0.0");
    assert.equal(statusOf("421 Service not available", true), "5.0.0");
    assert.equal(statusOf("550 Mailbox unavailable", true), "5.0.0");
  });

  it("statusOf() falls back for error text without a code", () => {
    assert.equal(statusOf("connect ETIMEDOUT", false), "4.0.0");
    assert.equal(statusOf("", true), "5.0.0");
  });

  it("statusOf() finds a code inside error text", () => {
    assert.equal(statusOf("rejected by policy (5.7.26).", true), "5.7.26");
    assert.equal(statusOf("5.7.134 Blocked", false), "4.7.134");
  });

  it("statusOf() does not take an IPv4 address or version number for a code", () => {
    assert.equal(statusOf("connect ECONNREFUSED 5.6.7.8:25", false), "4.0.0");
    assert.equal(statusOf("connect ECONNREFUSED 10.4.4.1:25", true), "5.0.0");
    assert.equal(statusOf("server 4.4.10.2 said no", true), "5.0.0");
  });

  it("statusOf() skips success codes", () => {
    assert.equal(statusOf("250 2.0.0 OK", true), "5.0.0");
    assert.equal(statusOf("250 2.0.0 then 554 5.7.1 no", true), "5.7.1");
  });
});
