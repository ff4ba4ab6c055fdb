/**
 * How long the resolver keeps what it learnt, against the loopback test
 * server, on a clock the test moves: each test checks an answer is served
 * from the cache up to the last millisecond of its lifetime and asked again
 * at that millisecond, so no test depends on how fast the machine runs.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DnsError, DnsResolver, type DnsResolverOptions } from "../../../src/dns/mod.ts";
import {
  type DnsServerOptions,
  startDnsServer,
  type TestDnsServer,
  type Zone,
} from "../../support/dns_server.ts";

const ZONE: Zone = {
  "short.test": { A: ["192.0.2.1"], ttl: 120 },
  "default.test": { A: ["192.0.2.2"] },
  "forever.test": { A: ["192.0.2.3"], TXT: ["v=spf1 -all"], ttl: 2_000_000_000 },
  "alias.test": { CNAME: "short.test", ttl: 3600 },
  "brief.test": { CNAME: "default.test", ttl: 30 },
  "empty.test": { A: ["192.0.2.4"] },
};

/** A clock the test moves, in milliseconds. */
interface TestClock {
  ms: number;
}

/**
 * A resolver pointed at `server` whose cache runs on `clock`, and a probe
 * that asks it `name`/`type` and says how many queries the server has seen
 * for them since the probe was made.
 */
function setup(
  server: TestDnsServer,
  name: string,
  type: string,
  options: Omit<DnsResolverOptions, "servers" | "now"> = {},
) {
  const clock: TestClock = { ms: 1_000_000 };
  const resolver = new DnsResolver({
    servers: [server.address],
    timeoutMs: 2000,
    now: () => clock.ms,
    ...options,
  });
  const before = server.count(name, type);
  /** Asks once; the outcome (answer or error code) and the server's queries so far. */
  const ask = async () => {
    const outcome = await resolver.resolve(name, type).catch((err: unknown) => {
      assert.ok(err instanceof DnsError, `expected a DnsError, got ${err}`);
      return err.code;
    });
    return { outcome, queries: server.count(name, type) - before };
  };
  return { clock, resolver, ask };
}

/**
 * Asserts the answer to `name`/`type` is kept exactly `lifetimeMs`: one
 * query for the first ask, none until the last millisecond, another at
 * `lifetimeMs`, with the same outcome every time.
 */
async function assertKeptFor(
  server: TestDnsServer,
  name: string,
  type: string,
  lifetimeMs: number,
  options: Omit<DnsResolverOptions, "servers" | "now"> = {},
): Promise<void> {
  const { clock, resolver, ask } = setup(server, name, type, options);
  const start = clock.ms;
  const first = await ask();
  assert.equal(first.queries, 1);
  assert.equal(resolver.cachedTtlMs(name, type), lifetimeMs, "the lifetime it was cached for");
  clock.ms = start + lifetimeMs - 1;
  assert.deepEqual(await ask(), { ...first, queries: 1 }, "from the cache 1 ms before it expires");
  assert.equal(resolver.cachedTtlMs(name, type), 1);
  clock.ms = start + lifetimeMs;
  assert.equal(resolver.cachedTtlMs(name, type), 0, "expired");
  assert.deepEqual(await ask(), { ...first, queries: 2 }, "asked again once expired");
  assert.equal(resolver.cachedTtlMs(name, type), lifetimeMs, "cached again from then on");
}

describe("DnsResolver cache lifetimes", () => {
  let server: TestDnsServer;
  before(async () => {
    server = await startDnsServer(ZONE);
  });
  after(async () => {
    await server.close();
  });

  it("serves an answer from the cache for its TTL, then asks again", async () => {
    await assertKeptFor(server, "short.test", "A", 120_000);
    await assertKeptFor(server, "default.test", "A", 300_000);
  });

  it("keeps an answer found through a CNAME for the shortest TTL on the chain", async () => {
    // alias.test's CNAME has 3600 s, the A record at its end 120 s;
    // brief.test's CNAME 30 s, the record at its end 300 s.
    await assertKeptFor(server, "alias.test", "A", 120_000);
    await assertKeptFor(server, "brief.test", "A", 30_000);
  });

  it("cuts a TTL over maxTtlSeconds to the cap, one day by default", async () => {
    await assertKeptFor(server, "forever.test", "A", 86_400_000);
    await assertKeptFor(server, "forever.test", "TXT", 60_000, { maxTtlSeconds: 60 });
    // A cap above the record's own TTL changes nothing.
    await assertKeptFor(server, "short.test", "A", 120_000, { maxTtlSeconds: 600 });
  });

  it("keeps NXDOMAIN and NODATA for the SOA's negative TTL (RFC 2308)", async () => {
    // The server's SOA has TTL and MINIMUM 60.
    await assertKeptFor(server, "gone.test", "A", 60_000);
    await assertKeptFor(server, "empty.test", "TXT", 60_000);
  });

  it("remembers a failed lookup for failureTtlMs (RFC 9520)", async () => {
    server.mode = "servfail";
    try {
      await assertKeptFor(server, "short.test", "MX", 5000);
      await assertKeptFor(server, "short.test", "AAAA", 750, { failureTtlMs: 750 });
    } finally {
      server.mode = "normal";
    }
  });
});

describe("DnsResolver negative lifetimes by the SOA", () => {
  /** Runs `check` against a server whose negative answers carry an SOA per `options`. */
  async function withServer(
    options: DnsServerOptions,
    check: (server: TestDnsServer) => Promise<void>,
  ): Promise<void> {
    const server = await startDnsServer(ZONE, options);
    try {
      await check(server);
    } finally {
      await server.close();
    }
  }

  it("takes the smaller of the SOA's TTL and its MINIMUM", async () => {
    await withServer({ negativeTtl: 60, soaMinimum: 30 }, async (server) => {
      await assertKeptFor(server, "gone.test", "A", 30_000);
      await assertKeptFor(server, "empty.test", "TXT", 30_000);
    });
    await withServer({ negativeTtl: 20, soaMinimum: 90 }, async (server) => {
      await assertKeptFor(server, "gone.test", "A", 20_000);
    });
  });

  it("cuts a long negative TTL to maxNegativeTtlSeconds, five minutes by default", async () => {
    await withServer({ negativeTtl: 86_400 }, async (server) => {
      await assertKeptFor(server, "gone.test", "A", 300_000);
      await assertKeptFor(server, "empty.test", "TXT", 300_000);
      await assertKeptFor(server, "gone.test", "TXT", 10_000, { maxNegativeTtlSeconds: 10 });
    });
  });

  it("does not keep a negative answer that comes without an SOA", async () => {
    await withServer({ soa: false }, async (server) => {
      const { resolver, ask } = setup(server, "gone.test", "A");
      assert.deepEqual(await ask(), { outcome: "ENOTFOUND", queries: 1 });
      assert.equal(resolver.cachedTtlMs("gone.test", "A"), 0);
      assert.deepEqual(await ask(), { outcome: "ENOTFOUND", queries: 2 });
    });
  });
});
