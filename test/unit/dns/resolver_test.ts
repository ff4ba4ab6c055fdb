import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DnsError, DnsResolver, type DnsResolverOptions } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../../support/dns_server.ts";

const ZONE: Zone = {
  "multi.test": { TXT: [["v=spf1 ", "ip4:192.0.2.0/24 ", "-all"], "second record"] },
  "host.test": { A: ["192.0.2.10", "192.0.2.11"], AAAA: ["2001:db8::10"], ttl: 120 },
  "v4only.test": { A: ["192.0.2.20"] },
  "mail.test": {
    MX: [{ priority: 20, exchange: "mx2.mail.test" }, { priority: 10, exchange: "mx1.mail.test" }],
  },
  "nullmx.test": { MX: [{ priority: 0, exchange: "." }] },
  "alias.test": { CNAME: "host.test" },
  "10.2.0.192.in-addr.arpa": { PTR: ["host.test"] },
  "leaf.parent.test": { A: ["192.0.2.30"] },
  "big.test": { TXT: Array.from({ length: 30 }, (_, i) => `${"x".repeat(60)} record ${i}`) },
  "long.test": { TXT: ["p=" + "A".repeat(400)] },
};

/** A resolver pointed at `server`, with short timeouts for the tests. */
function resolverFor(
  server: TestDnsServer,
  options: Omit<DnsResolverOptions, "servers"> = {},
): DnsResolver {
  return new DnsResolver({ servers: [server.address], timeoutMs: 400, ...options });
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<DnsError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DnsError, `expected a DnsError, got ${err}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected ${code}, but the lookup succeeded`);
}

describe("DnsResolver answers", () => {
  let server: TestDnsServer;
  before(async () => {
    server = await startDnsServer(ZONE);
  });
  after(async () => {
    await server.close();
  });

  it("resolve() returns TXT records as arrays of their character-strings", async () => {
    const txt = await resolverFor(server).resolve("multi.test", "TXT");
    assert.deepEqual(txt, [["v=spf1 ", "ip4:192.0.2.0/24 ", "-all"], ["second record"]]);
  });

  it("resolve() keeps a TXT record over 255 bytes as one record of several strings", async () => {
    const txt = await resolverFor(server).resolve("long.test", "TXT") as string[][];
    assert.equal(txt.length, 1);
    assert.equal(txt[0]!.length, 2);
    assert.equal(txt[0]!.join(""), "p=" + "A".repeat(400));
  });

  it("resolve() returns A and AAAA records as address strings", async () => {
    const resolver = resolverFor(server);
    assert.deepEqual(await resolver.resolve("host.test", "A"), ["192.0.2.10", "192.0.2.11"]);
    assert.deepEqual(await resolver.resolve("host.test.", "aaaa"), ["2001:db8::10"]);
  });

  it("resolve() returns MX records as {exchange, priority} and mx() sorts them", async () => {
    const resolver = resolverFor(server);
    assert.deepEqual(await resolver.resolve("mail.test", "MX"), [
      { exchange: "mx2.mail.test", priority: 20 },
      { exchange: "mx1.mail.test", priority: 10 },
    ]);
    assert.deepEqual(await resolver.mx("mail.test"), [
      { exchange: "mx1.mail.test", priority: 10 },
      { exchange: "mx2.mail.test", priority: 20 },
    ]);
  });

  it("mx() reports a null MX (RFC 7505) as an empty exchange", async () => {
    assert.deepEqual(await resolverFor(server).mx("nullmx.test"), [{ exchange: "", priority: 0 }]);
  });

  it("resolve() returns PTR and CNAME targets as names", async () => {
    const resolver = resolverFor(server);
    assert.deepEqual(await resolver.resolve("10.2.0.192.in-addr.arpa", "PTR"), ["host.test"]);
    assert.deepEqual(await resolver.resolve("alias.test", "CNAME"), ["host.test"]);
  });

  it("resolve() follows a CNAME to the target's records", async () => {
    assert.deepEqual(await resolverFor(server).resolve("Alias.Test", "A"), [
      "192.0.2.10",
      "192.0.2.11",
    ]);
  });

  it("addresses() returns IPv4 then IPv6 addresses", async () => {
    const resolver = resolverFor(server);
    assert.deepEqual(await resolver.addresses("host.test"), [
      { address: "192.0.2.10", family: 4 },
      { address: "192.0.2.11", family: 4 },
      { address: "2001:db8::10", family: 6 },
    ]);
    assert.deepEqual(await resolver.addresses("v4only.test"), [{
      address: "192.0.2.20",
      family: 4,
    }]);
    await rejectsWith(resolver.addresses("missing.test"), "ENOTFOUND");
    await rejectsWith(resolver.addresses("mail.test"), "ENODATA");
  });

  it("resolve() fails with ENOTFOUND for NXDOMAIN and ENODATA for NODATA", async () => {
    const resolver = resolverFor(server);
    const err = await rejectsWith(resolver.resolve("missing.test", "TXT"), "ENOTFOUND");
    assert.equal(err.hostname, "missing.test");
    assert.equal(err.rrtype, "TXT");
    await rejectsWith(resolver.resolve("host.test", "TXT"), "ENODATA");
    // An empty non-terminal exists (RFC 8020): NODATA, not NXDOMAIN.
    await rejectsWith(resolver.resolve("parent.test", "A"), "ENODATA");
  });

  it("resolve() refuses invalid names and unsupported types without a query", async () => {
    const resolver = resolverFor(server);
    const before = server.queries.length;
    await rejectsWith(resolver.resolve(`${"a".repeat(64)}.test`, "TXT"), "EBADNAME");
    await rejectsWith(resolver.resolve("a..test", "TXT"), "EBADNAME");
    await rejectsWith(resolver.resolve("ünicode.test", "TXT"), "EBADNAME");
    await rejectsWith(resolver.resolve("host.test", "SRV"), "ENOTIMP");
    assert.equal(server.queries.length, before);
  });

  it("resolve() gives every caller its own copy of arrays and errors", async () => {
    const resolver = resolverFor(server);
    const first = await resolver.resolve("mail.test", "MX") as Array<{ priority: number }>;
    first.sort((a, b) => a.priority - b.priority);
    first[0]!.priority = 99;
    assert.equal((await resolver.resolve("mail.test", "MX") as typeof first)[0]!.priority, 20);
    const e1 = await rejectsWith(resolver.resolve("missing.test", "A"), "ENOTFOUND");
    (e1 as unknown as Record<string, unknown>)["spfResult"] = "written by mailauth";
    const e2 = await rejectsWith(resolver.resolve("missing.test", "A"), "ENOTFOUND");
    assert.notEqual(e1, e2);
    assert.equal((e2 as unknown as Record<string, unknown>)["spfResult"], undefined);
  });

  it("resolve() falls back to TCP when an answer is too big for UDP", async () => {
    const txt = await resolverFor(server).resolve("big.test", "TXT");
    assert.equal(txt.length, 30);
    assert.deepEqual(
      server.queries.filter((q) => q.name === "big.test").map((q) => q.transport),
      ["udp", "tcp"],
    );
  });
});

// How long answers are kept (TTLs, caps, negative answers): ttl_test.ts.
describe("DnsResolver cache", () => {
  let server: TestDnsServer;
  before(async () => {
    server = await startDnsServer(ZONE);
  });
  after(async () => {
    await server.close();
  });

  it("answers a repeated question from the cache without a query", async () => {
    const resolver = resolverFor(server);
    await resolver.resolve("multi.test", "TXT");
    await resolver.resolve("MULTI.test.", "TXT");
    await resolver.resolve("multi.test", "TXT");
    assert.equal(server.count("multi.test", "TXT"), 1);
  });

  it("sends one query for concurrent identical questions", async () => {
    const resolver = resolverFor(server);
    await Promise.all([1, 2, 3].map(() => resolver.resolve("host.test", "A")));
    assert.equal(server.count("host.test", "A"), 1);
  });

  it("does not cache anything when the cache is disabled", async () => {
    const resolver = resolverFor(server, { cacheMaxEntries: 0 });
    await resolver.resolve("leaf.parent.test", "A");
    await resolver.resolve("leaf.parent.test", "A");
    assert.equal(server.count("leaf.parent.test", "A"), 2);
  });
});

describe("DnsResolver negative answers without an SOA", () => {
  it("does not cache NXDOMAIN without an SOA (RFC 2308 section 5)", async () => {
    const server = await startDnsServer(ZONE, { soa: false });
    try {
      const resolver = resolverFor(server);
      await rejectsWith(resolver.resolve("gone.test", "TXT"), "ENOTFOUND");
      await rejectsWith(resolver.resolve("gone.test", "TXT"), "ENOTFOUND");
      assert.equal(server.count("gone.test", "TXT"), 2);
    } finally {
      await server.close();
    }
  });

  it("asks for a CNAME's target when the server answers the CNAME alone", async () => {
    const server = await startDnsServer(ZONE, { chaseCnames: false });
    try {
      assert.deepEqual(await resolverFor(server).resolve("alias.test", "AAAA"), ["2001:db8::10"]);
      assert.equal(server.count("alias.test", "AAAA"), 1);
      assert.equal(server.count("host.test", "AAAA"), 1);
    } finally {
      await server.close();
    }
  });
});
