import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DnsError, DnsResolver, isTemporaryDnsError, isVoidLookup } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../../support/dns_server.ts";

const ZONE: Zone = {
  "ok.test": { A: ["192.0.2.1"], TXT: [["v=spf1 ", "-all"]] },
  "slow.test": { A: ["192.0.2.2"], mode: "timeout" },
  "broken.test": { A: ["192.0.2.3"], mode: "servfail" },
  "refused.test": { A: ["192.0.2.4"], mode: "refused" },
  "garbage.test": { A: ["192.0.2.5"], mode: "garbage" },
  "truncated.test": { TXT: [["v=spf1 ", "include:ok.test ", "-all"]], mode: "truncate" },
  "old.test": { A: ["192.0.2.6"], mode: "noedns" },
};

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DnsError, `expected a DnsError, got ${err}`);
    return err.code;
  }
  return "resolved";
}

describe("DnsResolver failures", () => {
  let server: TestDnsServer;
  before(async () => {
    server = await startDnsServer(ZONE);
  });
  after(async () => {
    await server.close();
  });

  it("fails with ETIMEOUT, not before timeoutMs, when the server stays silent", async () => {
    const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 300 });
    const started = Date.now();
    assert.equal(await codeOf(resolver.resolve("slow.test", "A")), "ETIMEOUT");
    // A lower bound only: a busy machine makes it later, never earlier. How
    // much later is not for a test to bound (the resolver reads Date.now()
    // and setTimeout directly; an injected clock would pin the deadline).
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250, `gave up after ${elapsed} ms`);
    // One retransmission after half the time (RFC 1035 section 4.2.1).
    assert.equal(server.count("slow.test", "A"), 2);
  });

  it("maps SERVFAIL, REFUSED and garbage to temporary codes", async () => {
    const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 300 });
    assert.equal(await codeOf(resolver.resolve("broken.test", "A")), "ESERVFAIL");
    assert.equal(await codeOf(resolver.resolve("refused.test", "A")), "EREFUSED");
    assert.equal(await codeOf(resolver.resolve("garbage.test", "A")), "EBADRESP");
    const err = await resolver.resolve("broken.test", "A").catch((e: unknown) => e);
    assert.ok(isTemporaryDnsError(err));
    assert.ok(!isVoidLookup(err));
  });

  it("retries over TCP when the UDP answer is truncated", async () => {
    const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 1000 });
    assert.deepEqual(await resolver.resolve("truncated.test", "TXT"), [
      ["v=spf1 ", "include:ok.test ", "-all"],
    ]);
    assert.deepEqual(
      server.queries.filter((q) => q.name === "truncated.test").map((q) => q.transport),
      ["udp", "tcp"],
    );
  });

  it("asks again without EDNS when the server answers FORMERR (RFC 6891 section 7)", async () => {
    const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 1000 });
    assert.deepEqual(await resolver.resolve("old.test", "A"), ["192.0.2.6"]);
    assert.equal(server.count("old.test", "A"), 2);
  });

  it("remembers a failure for failureTtlMs (RFC 9520), and not with 0", async () => {
    const remembering = new DnsResolver({ servers: [server.address], failureTtlMs: 60_000 });
    assert.equal(await codeOf(remembering.resolve("broken.test", "TXT")), "ESERVFAIL");
    assert.equal(await codeOf(remembering.resolve("broken.test", "TXT")), "ESERVFAIL");
    assert.equal(server.count("broken.test", "TXT"), 1);
    const forgetting = new DnsResolver({ servers: [server.address], failureTtlMs: 0 });
    assert.equal(await codeOf(forgetting.resolve("broken.test", "MX")), "ESERVFAIL");
    assert.equal(await codeOf(forgetting.resolve("broken.test", "MX")), "ESERVFAIL");
    assert.equal(server.count("broken.test", "MX"), 2);
  });
});

describe("DnsResolver with several servers", () => {
  it("moves on to the next server after a timeout or SERVFAIL", async () => {
    const silent = await startDnsServer(ZONE);
    const failing = await startDnsServer(ZONE);
    const good = await startDnsServer(ZONE);
    silent.mode = "timeout";
    failing.mode = "servfail";
    try {
      const resolver = new DnsResolver({
        servers: [silent.address, failing.address, good.address],
        timeoutMs: 1200,
      });
      assert.deepEqual(await resolver.resolve("ok.test", "A"), ["192.0.2.1"]);
      assert.equal(silent.count("ok.test", "A"), 1);
      assert.equal(failing.count("ok.test", "A"), 1);
      assert.equal(good.count("ok.test", "A"), 1);
    } finally {
      await Promise.all([silent.close(), failing.close(), good.close()]);
    }
  });

  it("reports a temporary error when every server fails", async () => {
    const a = await startDnsServer(ZONE);
    const b = await startDnsServer(ZONE);
    a.mode = "refused";
    b.mode = "servfail";
    try {
      const resolver = new DnsResolver({ servers: [a.address, b.address], timeoutMs: 500 });
      assert.equal(await codeOf(resolver.resolve("ok.test", "TXT")), "ESERVFAIL");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("talks to a server on an IPv6 address given as [v6]:port", async () => {
    let server: TestDnsServer;
    try {
      server = await startDnsServer(ZONE, { host: "::1" });
    } catch (err) {
      // No silent pass: the test needs the IPv6 loopback, as CI has.
      throw new Error(`cannot listen on [::1] (no IPv6 loopback on this machine?): ${err}`);
    }
    try {
      const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 1000 });
      assert.match(server.address, /^\[::1\]:\d+$/);
      assert.deepEqual(await resolver.resolve("ok.test", "TXT"), [["v=spf1 ", "-all"]]);
    } finally {
      await server.close();
    }
  });
});
