import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatServer, parseServer } from "../../../src/dns/mod.ts";
import { TtlCache } from "../../../src/dns/cache.ts";

describe("parseServer", () => {
  it("parseServer() reads IPv4 with and without a port", () => {
    assert.deepEqual(parseServer("192.0.2.1"), { host: "192.0.2.1", port: 53, family: 4 });
    assert.deepEqual(parseServer("127.0.0.1:5353"), { host: "127.0.0.1", port: 5353, family: 4 });
  });

  it("parseServer() reads IPv6 bare or in brackets, in canonical form", () => {
    assert.deepEqual(parseServer("2001:db8::1"), { host: "2001:db8::1", port: 53, family: 6 });
    assert.deepEqual(parseServer("[::1]:5353"), { host: "::1", port: 5353, family: 6 });
    assert.deepEqual(parseServer("[2001:DB8:0:0:0:0:0:1]"), {
      host: "2001:db8::1",
      port: 53,
      family: 6,
    });
  });

  it("parseServer() rejects host names, zone indexes and bad ports", () => {
    assert.throws(() => parseServer("dns.example:53"), TypeError);
    assert.throws(() => parseServer("fe80::1%eth0"), TypeError);
    assert.throws(() => parseServer("127.0.0.1:0"), TypeError);
    assert.throws(() => parseServer("127.0.0.1:65536"), TypeError);
    assert.throws(() => parseServer("[::1]:x"), TypeError);
  });

  it("formatServer() brackets IPv6 only", () => {
    assert.equal(formatServer(parseServer("127.0.0.1:5353")), "127.0.0.1:5353");
    assert.equal(formatServer(parseServer("[::1]:5353")), "[::1]:5353");
  });
});

describe("TtlCache", () => {
  it("TtlCache expires entries after their TTL", () => {
    let now = 1000;
    const cache = new TtlCache<string>(10, () => now);
    cache.set("a", "x", 50);
    assert.equal(cache.get("a"), "x");
    now += 50;
    assert.equal(cache.get("a"), undefined);
  });

  it("TtlCache drops the least recently used entry when full", () => {
    const cache = new TtlCache<number>(2);
    cache.set("a", 1, 1000);
    cache.set("b", 2, 1000);
    assert.equal(cache.get("a"), 1); // "b" is now the least recently used
    cache.set("c", 3, 1000);
    assert.equal(cache.get("b"), undefined);
    assert.equal(cache.get("a"), 1);
    assert.equal(cache.get("c"), 3);
    assert.equal(cache.size, 2);
  });

  it("TtlCache stores nothing with a zero TTL or zero capacity", () => {
    const cache = new TtlCache<number>(2);
    cache.set("a", 1, 0);
    assert.equal(cache.get("a"), undefined);
    const off = new TtlCache<number>(0);
    off.set("a", 1, 1000);
    assert.equal(off.get("a"), undefined);
  });
});
