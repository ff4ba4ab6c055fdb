import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectionLimits, Replies } from "../../../src/smtp/mod.ts";

describe("ConnectionLimits", () => {
  it("admit() counts sessions until the total limit and then refuses with 421", () => {
    const limits = new ConnectionLimits(3, 10);
    assert.equal(limits.admit("s1", "192.0.2.1"), undefined);
    assert.equal(limits.admit("s2", "192.0.2.2"), undefined);
    assert.equal(limits.admit("s3", "192.0.2.3"), undefined);
    assert.equal(limits.open, 3);
    assert.deepEqual(limits.admit("s4", "192.0.2.4"), Replies.tooManyConnections);
    assert.equal(limits.admit("s4", "192.0.2.4")?.code, 421);
    assert.equal(limits.open, 3);
  });

  it("admit() refuses a client IP over its own limit while others still get in", () => {
    const limits = new ConnectionLimits(10, 2);
    assert.equal(limits.admit("a1", "192.0.2.1"), undefined);
    assert.equal(limits.admit("a2", "192.0.2.1"), undefined);
    assert.deepEqual(limits.admit("a3", "192.0.2.1"), Replies.tooManyConnectionsFromIp);
    assert.equal(limits.admit("b1", "192.0.2.2"), undefined);
    assert.equal(limits.open, 3);
  });

  it("release() frees a slot for the same IP and for the total", () => {
    const limits = new ConnectionLimits(2, 1);
    assert.equal(limits.admit("a1", "192.0.2.1"), undefined);
    assert.equal(limits.admit("b1", "192.0.2.2"), undefined);
    assert.ok(limits.admit("c1", "192.0.2.3"));
    assert.ok(limits.admit("a2", "192.0.2.1"));
    limits.release("a1");
    assert.equal(limits.open, 1);
    assert.equal(limits.admit("a2", "192.0.2.1"), undefined);
    assert.equal(limits.open, 2);
  });

  it("release() of an unknown or refused session is a no-op", () => {
    const limits = new ConnectionLimits(5, 1);
    assert.equal(limits.admit("a1", "192.0.2.1"), undefined);
    assert.ok(limits.admit("a2", "192.0.2.1"));
    limits.release("a2"); // refused, never counted
    limits.release("never-seen");
    assert.equal(limits.open, 1);
    assert.ok(limits.admit("a3", "192.0.2.1"), "the IP must still be at its limit");
  });

  it("release() twice for the same session counts it only once", () => {
    const limits = new ConnectionLimits(5, 2);
    limits.admit("a1", "192.0.2.1");
    limits.admit("a2", "192.0.2.1");
    limits.release("a1");
    limits.release("a1");
    assert.equal(limits.open, 1);
    assert.equal(limits.admit("a3", "192.0.2.1"), undefined);
    assert.ok(limits.admit("a4", "192.0.2.1"));
  });

  it("counts an IPv6 client by its /64, which one host may use all of", () => {
    const limits = new ConnectionLimits(10, 2);
    assert.equal(limits.admit("a1", "2001:db8:1:2::1"), undefined);
    assert.equal(limits.admit("a2", "2001:db8:1:2:ffff::9"), undefined);
    assert.deepEqual(limits.admit("a3", "2001:db8:1:2::77")?.code, 421);
    assert.equal(limits.admit("a4", "2001:db8:1:3::1"), undefined, "another /64 is another client");
    limits.release("a1");
    assert.equal(limits.admit("a5", "2001:db8:1:2::5"), undefined);
  });

  it("setLimits() applies to the next connections and keeps those open", () => {
    const limits = new ConnectionLimits(10, 1);
    assert.equal(limits.admit("a1", "192.0.2.1"), undefined);
    assert.ok(limits.admit("a2", "192.0.2.1"));
    limits.setLimits(10, 3);
    assert.equal(limits.admit("a3", "192.0.2.1"), undefined);
    limits.setLimits(1, 3);
    assert.ok(limits.admit("a4", "192.0.2.2"));
    assert.equal(limits.open, 2);
  });
});
