import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SpfVerdictCache } from "../../../src/auth/mod.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns_server.ts";

describe("SpfVerdictCache", () => {
  let dns: TestDnsServer;
  let now = 1_000_000;
  let resolver: DnsResolver;
  before(async () => {
    dns = await startDnsServer({
      "cached.test": { TXT: ["v=spf1 a include:_spf.cached.test -all"], A: ["192.0.2.10"] },
      "_spf.cached.test": { TXT: ["v=spf1 ip4:192.0.2.0/24 -all"], ttl: 30 },
      "slow.test": { TXT: ["v=spf1 -all"], mode: "timeout" },
    });
  });
  after(async () => {
    await dns.close();
  });
  const fresh = () => {
    resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 300 });
    return new SpfVerdictCache({
      ttlOf: (name, type) => resolver.cachedTtlMs(name, type),
      now: () => now,
    });
  };
  /** Lookups the checks asked for (answered from the resolver's cache or not). */
  let lookups = 0;
  const check = (cache: SpfVerdictCache, sender: string, ip = "192.0.2.1") =>
    cache.check({
      sender,
      ip,
      helo: "client.example",
      hostname: "mx.postern.test",
      resolver: (name, type) => {
        lookups++;
        return resolver.resolve(name, type);
      },
    });

  it("answers a repeated check from memory, without a DNS query", async () => {
    const cache = fresh();
    const first = await check(cache, "a@cached.test");
    assert.equal(first.result, "pass");
    const queries = dns.count();
    const asked = lookups;
    const second = await check(cache, "a@cached.test");
    assert.equal(second, first);
    assert.equal(dns.count(), queries);
    assert.equal(lookups, asked);
    assert.equal(cache.size, 1);
  });

  it("checks again for another sender, client address or HELO name", async () => {
    const cache = fresh();
    await check(cache, "a@cached.test");
    const other = await check(cache, "b@cached.test");
    assert.match(other.receivedSpf, /b@cached\.test/);
    const outside = await check(cache, "a@cached.test", "198.51.100.7");
    assert.equal(outside.result, "fail");
    assert.equal(cache.size, 3);
  });

  it("keeps a verdict no longer than the shortest TTL of the answers it used", async () => {
    const cache = fresh();
    // The resolver's own clock is real; the cache's is ours. The include's
    // record has a TTL of 30 s, so the verdict may live at most that long.
    await check(cache, "a@cached.test");
    const asked = lookups;
    now += 29_000;
    await check(cache, "a@cached.test");
    assert.equal(lookups, asked, "remembered at 29 s");
    now += 2_000;
    await check(cache, "a@cached.test");
    assert.ok(lookups > asked, "evaluated again past 30 s");
    assert.equal(cache.size, 1);
  });

  it("does not remember a temperror", async () => {
    const cache = fresh();
    const verdict = await check(cache, "a@slow.test");
    assert.equal(verdict.result, "temperror");
    assert.equal(cache.size, 0);
  });
});
