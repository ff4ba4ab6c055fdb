/**
 * Tests of `mailHosts()`: MX order (RFC 5321 section 5.1), the implicit MX,
 * the null MX (RFC 7505), and how each kind of DNS failure maps to a
 * permanent or temporary RoutingError. Lookups go through the real resolver
 * to the loopback test DNS server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DnsResolver } from "../../../src/dns/mod.ts";
import {
  mailHosts,
  MAX_MX_HOSTS,
  MX_LOOKUPS_AT_ONCE,
  relayHost,
  RoutingError,
} from "../../../src/outbound/mx.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../../support/dns_server.ts";

const ZONE: Zone = {
  // MX records given out of order, with a tie and an upper-case exchange.
  "ordered.test": {
    MX: [
      { priority: 30, exchange: "mx3.ordered.test" },
      { priority: 10, exchange: "MX1.Ordered.Test" },
      { priority: 20, exchange: "mx2.ordered.test" },
    ],
  },
  "mx1.ordered.test": { A: ["192.0.2.1"] },
  "mx2.ordered.test": { A: ["192.0.2.2"], AAAA: ["2001:db8::2"] },
  "mx3.ordered.test": { AAAA: ["2001:db8::3"] },

  // Three hosts share preference 10, between two that do not.
  "ties.test": {
    MX: [
      { priority: 5, exchange: "first.ties.test" },
      { priority: 10, exchange: "a.ties.test" },
      { priority: 10, exchange: "b.ties.test" },
      { priority: 10, exchange: "c.ties.test" },
      { priority: 20, exchange: "last.ties.test" },
    ],
  },
  "first.ties.test": { A: ["192.0.2.80"] },
  "a.ties.test": { A: ["192.0.2.81"] },
  "b.ties.test": { A: ["192.0.2.82"] },
  "c.ties.test": { A: ["192.0.2.83"] },
  "last.ties.test": { A: ["192.0.2.84"] },

  // No MX: the domain's own addresses are the implicit MX.
  "implicit.test": { A: ["192.0.2.10"], AAAA: ["2001:db8::10"] },
  // Exists (it has a TXT record) but has neither MX nor addresses.
  "bare.test": { TXT: ["v=spf1 -all"] },

  "nullmx.test": { MX: [{ priority: 0, exchange: "." }], A: ["192.0.2.20"] },

  // One MX host has no addresses, one does not exist: both are skipped.
  "partial.test": {
    MX: [
      { priority: 5, exchange: "gone.partial.test" },
      { priority: 10, exchange: "noaddr.partial.test" },
      { priority: 20, exchange: "ok.partial.test" },
    ],
  },
  "noaddr.partial.test": { TXT: ["no addresses here"] },
  "ok.partial.test": { A: ["192.0.2.30"] },

  // Every MX host is void.
  "void.test": {
    MX: [
      { priority: 10, exchange: "a.void.test" },
      { priority: 20, exchange: "b.void.test" },
    ],
  },
  "a.void.test": { TXT: ["nothing"] },

  // The MX lookup itself fails.
  "servfail.test": { MX: [{ priority: 10, exchange: "mx.ok.test" }], mode: "servfail" },
  "silent.test": { MX: [{ priority: 10, exchange: "mx.ok.test" }], mode: "timeout" },
  "mx.ok.test": { A: ["192.0.2.40"] },

  // One MX host's address lookup fails, another's works.
  "mixed.test": {
    MX: [
      { priority: 10, exchange: "broken.mixed.test" },
      { priority: 20, exchange: "good.mixed.test" },
    ],
  },
  "broken.mixed.test": { A: ["192.0.2.50"], mode: "servfail" },
  "good.mixed.test": { A: ["192.0.2.51"] },

  // The only MX hosts: one whose lookup fails, one that is void.
  "flaky.test": {
    MX: [
      { priority: 10, exchange: "void.flaky.test" },
      { priority: 20, exchange: "broken.flaky.test" },
    ],
  },
  "broken.flaky.test": { A: ["192.0.2.60"], mode: "servfail" },

  // No MX, and the implicit MX's address lookup fails.
  "implicit-broken.test": { A: ["192.0.2.70"], mode: "servfail" },
};

/** The RoutingError `promise` rejects with. */
async function routingError(promise: Promise<unknown>): Promise<RoutingError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof RoutingError, `expected a RoutingError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected mailHosts() to reject");
}

describe("mailHosts", () => {
  let server: TestDnsServer;
  let resolver: DnsResolver;
  before(async () => {
    server = await startDnsServer(ZONE);
    resolver = new DnsResolver({ servers: [server.address], timeoutMs: 400 });
  });
  after(async () => {
    await server.close();
  });

  it("mailHosts() looks up a few hosts' addresses at a time, of the first MAX_MX_HOSTS hosts", async () => {
    // 1500 MX records had one attempt send 3000 queries at once, each on a
    // socket of its own, and run Postern out of descriptors.
    const count = MAX_MX_HOSTS + 30;
    let inFlight = 0;
    let most = 0;
    const asked: string[] = [];
    const fake = {
      mx: () =>
        Promise.resolve(
          Array.from({ length: count }, (_, i) => ({ priority: i, exchange: `mx${i}.many.test` })),
        ),
      addresses: async (name: string) => {
        asked.push(name);
        most = Math.max(most, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 1));
        inFlight--;
        return [{ address: "192.0.2.1", family: 4 as const }];
      },
    } as unknown as DnsResolver;
    const hosts = await mailHosts(fake, "many.test");
    assert.equal(hosts.length, MAX_MX_HOSTS);
    assert.equal(hosts[0]!.name, "mx0.many.test");
    assert.equal(new Set(asked).size, MAX_MX_HOSTS);
    assert.ok(most <= MX_LOOKUPS_AT_ONCE, `${most} lookups at once`);
  });

  it("mailHosts() goes past hosts without addresses, however many come first", async () => {
    server.zone["few.test"] = {
      MX: Array.from({ length: 12 }, (_, i) => ({ priority: i, exchange: `mx${i}.few.test` })),
    };
    server.zone["mx11.few.test"] = { A: ["192.0.2.111"] };
    const hosts = await mailHosts(resolver, "few.test");
    assert.deepEqual(hosts.map((h) => h.name), ["mx11.few.test"]);
  });

  it("mailHosts() lists MX hosts by preference, lower-cased, each with its addresses", async () => {
    const hosts = await mailHosts(resolver, "ordered.test");
    assert.deepEqual(hosts, [
      {
        name: "mx1.ordered.test",
        preference: 10,
        addresses: [{ address: "192.0.2.1", family: 4 }],
      },
      {
        name: "mx2.ordered.test",
        preference: 20,
        addresses: [{ address: "192.0.2.2", family: 4 }, { address: "2001:db8::2", family: 6 }],
      },
      {
        name: "mx3.ordered.test",
        preference: 30,
        addresses: [{ address: "2001:db8::3", family: 6 }],
      },
    ]);
  });

  it("mailHosts() puts hosts of equal preference in the order the random source draws (RFC 5321 section 5.1)", async () => {
    const names = async (random: () => number) =>
      (await mailHosts(resolver, "ties.test", random)).map((h) => h.name.split(".")[0]);
    // Fisher-Yates over the tie: a draw near 1 keeps each host in place,
    // a draw of 0 swaps each with the first of the run.
    assert.deepEqual(await names(() => 0.999), ["first", "a", "b", "c", "last"]);
    assert.deepEqual(await names(() => 0), ["first", "b", "c", "a", "last"]);
    const draws = [0.5, 0.999];
    assert.deepEqual(await names(() => draws.shift()!), ["first", "a", "c", "b", "last"]);
    assert.equal(draws.length, 0, "one draw per host of the tie after the first");
  });

  it("mailHosts() draws a new order on every call, not once per cached answer", async () => {
    const order = async (random: () => number) =>
      (await mailHosts(resolver, "ties.test", random)).map((h) => h.name).join(" ");
    const first = await order(() => 0);
    const queries = server.count("ties.test", "MX");
    // The same draws give the same order from the cached records (a shuffle
    // of the cache would compound), and other draws another order.
    assert.equal(await order(() => 0), first);
    assert.notEqual(await order(() => 0.999), first);
    assert.equal(server.count("ties.test", "MX"), queries, "answered from the cache");
  });

  it("mailHosts() uses the domain itself as an implicit MX of preference 0 when it has no MX", async () => {
    const hosts = await mailHosts(resolver, "implicit.test");
    assert.deepEqual(hosts, [{
      name: "implicit.test",
      preference: 0,
      addresses: [{ address: "192.0.2.10", family: 4 }, { address: "2001:db8::10", family: 6 }],
    }]);
  });

  it("mailHosts() fails permanently with 5.1.10 for a null MX (RFC 7505)", async () => {
    const err = await routingError(mailHosts(resolver, "nullmx.test"));
    assert.equal(err.permanent, true);
    assert.equal(err.status, "5.1.10");
    assert.match(err.message, /nullmx\.test/);
    // The domain's A record is not used as an implicit MX.
    assert.equal(server.count("nullmx.test", "A"), 0);
  });

  it("mailHosts() fails permanently with 5.1.2 for a domain that does not exist", async () => {
    const err = await routingError(mailHosts(resolver, "nosuch.test"));
    assert.equal(err.permanent, true);
    assert.equal(err.status, "5.1.2");
    assert.match(err.message, /nosuch\.test/);
  });

  it("mailHosts() fails permanently when the domain has neither MX nor address records", async () => {
    const err = await routingError(mailHosts(resolver, "bare.test"));
    assert.equal(err.permanent, true);
    assert.match(err.status, /^5\./);
    assert.match(err.message, /bare\.test/);
  });

  it("mailHosts() fails temporarily with 4.4.3 when the MX lookup gets SERVFAIL", async () => {
    const err = await routingError(mailHosts(resolver, "servfail.test"));
    assert.equal(err.permanent, false);
    assert.equal(err.status, "4.4.3");
    assert.match(err.message, /servfail\.test/);
  });

  it("mailHosts() fails temporarily with 4.4.3 when the MX lookup times out", async () => {
    const err = await routingError(mailHosts(resolver, "silent.test"));
    assert.equal(err.permanent, false);
    assert.equal(err.status, "4.4.3");
  });

  it("mailHosts() leaves out MX hosts that do not exist or have no addresses", async () => {
    const hosts = await mailHosts(resolver, "partial.test");
    assert.deepEqual(hosts, [
      {
        name: "ok.partial.test",
        preference: 20,
        addresses: [{ address: "192.0.2.30", family: 4 }],
      },
    ]);
  });

  it("mailHosts() fails temporarily with 4.4.4 when no MX host has an address", async () => {
    const err = await routingError(mailHosts(resolver, "void.test"));
    assert.equal(err.permanent, false);
    assert.equal(err.status, "4.4.4");
    assert.match(err.message, /a\.void\.test/);
    assert.match(err.message, /b\.void\.test/);
  });

  it("mailHosts() keeps the hosts that resolved when another host's lookup fails", async () => {
    const hosts = await mailHosts(resolver, "mixed.test");
    assert.deepEqual(hosts.map((h) => h.name), ["good.mixed.test"]);
  });

  it("mailHosts() fails temporarily with 4.4.3 when no host resolved and one lookup failed", async () => {
    const err = await routingError(mailHosts(resolver, "flaky.test"));
    assert.equal(err.permanent, false);
    assert.equal(err.status, "4.4.3");
  });

  it("mailHosts() fails temporarily when the implicit MX's address lookup fails", async () => {
    const err = await routingError(mailHosts(resolver, "implicit-broken.test"));
    assert.equal(err.permanent, false);
    assert.equal(err.status, "4.4.3");
  });
});

describe("relayHost", () => {
  it("gives an IPv6 smarthost address family 6, so a virtual MTA bound to IPv6 can dial it", () => {
    // Counted as 4, it was filtered out for every IPv6-bound virtual MTA:
    // "could not reach any host: no usable address" on every retry.
    assert.deepEqual(relayHost("::1").addresses, [{ address: "::1", family: 6 }]);
    assert.deepEqual(relayHost("2001:db8::25").addresses, [{ address: "2001:db8::25", family: 6 }]);
    assert.deepEqual(relayHost("192.0.2.25").addresses, [{ address: "192.0.2.25", family: 4 }]);
    assert.equal(relayHost("smtp.provider.test").name, "smtp.provider.test");
  });
});
