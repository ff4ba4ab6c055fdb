import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { checkSpf, type SpfCheckOptions, type SpfVerdict } from "../../../src/auth/mod.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../../support/dns_server.ts";

const HOSTNAME = "mx.postern.test";

/** Eleven includes: one more DNS-querying term than RFC 7208 section 4.6.4 allows. */
const MANY_INCLUDES = Array.from({ length: 11 }, (_, i) => `include:l${i}.lookups.test`).join(" ");

const ZONE: Zone = {
  "pass.test": {
    TXT: [["v=spf1 ip4:192.0.2.0/24 ", "ip6:2001:db8:1::/48 ", "-all"], "not an spf record"],
  },
  "softfail.test": { TXT: ["v=spf1 ip4:192.0.2.1 ~all"] },
  "neutral.test": { TXT: ["v=spf1 ?all"] },
  "nospf.test": { TXT: ["google-site-verification=abc"], A: ["192.0.2.1"] },
  "explained.test": { TXT: ["v=spf1 ip4:192.0.2.1 exp=why.explained.test -all"] },
  "why.explained.test": { TXT: ["%{i} may not send mail for %{d}"] },
  "timeout.test": { TXT: ["v=spf1 -all"], mode: "timeout" },
  "servfail.test": { TXT: ["v=spf1 -all"], mode: "servfail" },
  "include-broken.test": { TXT: ["v=spf1 include:servfail.test -all"] },
  "syntax.test": { TXT: ["v=spf1 ip4:192.0.2.0/33 -all"] },
  "unknown.test": { TXT: ["v=spf1 foo:bar -all"] },
  "two.test": { TXT: ["v=spf1 -all", "v=spf1 +all"] },
  "lookups.test": { TXT: [`v=spf1 ${MANY_INCLUDES} ip4:192.0.2.0/24 -all`] },
  ...Object.fromEntries(
    Array.from({ length: 11 }, (_, i) => [`l${i}.lookups.test`, { TXT: ["v=spf1 -all"] }]),
  ),
  "void.test": {
    TXT: ["v=spf1 a:gone1.void.test a:gone2.void.test a:gone3.void.test ip4:192.0.2.0/24 -all"],
  },
  "twovoid.test": { TXT: ["v=spf1 a:gone1.void.test a:gone2.void.test ip4:192.0.2.0/24 -all"] },
  "include.test": { TXT: ["v=spf1 include:softfail.test include:pass.test -all"] },
  "redirect.test": { TXT: ["v=spf1 ip4:198.51.100.1 redirect=pass.test"] },
  "macro.test": { TXT: ["v=spf1 exists:%{i}.%{l}.allow.%{d} -all"] },
  "192.0.2.7.alice.allow.macro.test": { A: ["127.0.0.2"] },
  "reverse.test": { TXT: ["v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all"] },
  "7.2.0.192.in-addr._spf.reverse.test": { A: ["127.0.0.2"] },
  "dual.test": { TXT: ["v=spf1 a -all"], A: ["192.0.2.170"], AAAA: ["2001:db8::aa"] },
  "mx.test": { TXT: ["v=spf1 mx -all"], MX: [{ priority: 10, exchange: "in.mx.test" }] },
  "in.mx.test": { A: ["192.0.2.99"] },
  "mail.helo.test": { TXT: ["v=spf1 ip4:192.0.2.9 -all"] },
  "loop.test": { TXT: ["v=spf1 include:loop.test -all"] },
};

describe("checkSpf", () => {
  let server: TestDnsServer;
  let resolver: DnsResolver;
  before(async () => {
    server = await startDnsServer(ZONE);
    resolver = new DnsResolver({ servers: [server.address], timeoutMs: 300 });
  });
  after(async () => {
    await server.close();
  });

  function check(options: Partial<SpfCheckOptions> & { sender: string; ip: string }) {
    return checkSpf({
      helo: "client.example",
      hostname: HOSTNAME,
      resolver: resolver.resolve,
      ...options,
    });
  }

  function assertResult(verdict: SpfVerdict, result: string, detail?: RegExp): void {
    assert.equal(verdict.result, result, verdict.comment);
    assert.match(verdict.receivedSpf, new RegExp(`^Received-SPF: ${result} `));
    assert.match(verdict.authResults, new RegExp(`^spf=${result} `));
    if (detail) assert.match(verdict.comment, detail);
  }

  it("passes an IPv4 client the domain lists, ignoring other TXT records", async () => {
    const verdict = await check({ sender: "alice@pass.test", ip: "192.0.2.5" });
    assertResult(verdict, "pass", /designates 192\.0\.2\.5 as permitted sender/);
    assert.equal(verdict.identity, "mailfrom");
    assert.equal(verdict.domain, "pass.test");
    assert.equal(verdict.record, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all");
    assert.match(verdict.authResults, /smtp\.mailfrom=alice@pass\.test/);
    assert.match(verdict.receivedSpf, /client-ip=192\.0\.2\.5;/);
  });

  it("fails an IPv4 client the domain does not list", async () => {
    const verdict = await check({ sender: "alice@pass.test", ip: "198.51.100.7" });
    assertResult(verdict, "fail", /does not designate 198\.51\.100\.7/);
    assert.equal(verdict.explanation, undefined);
  });

  it("passes and fails IPv6 clients by ip6 mechanisms", async () => {
    assertResult(await check({ sender: "a@pass.test", ip: "2001:db8:1::25" }), "pass");
    assertResult(await check({ sender: "a@pass.test", ip: "2001:db8:2::25" }), "fail");
  });

  it("treats an IPv4-mapped IPv6 client as IPv4", async () => {
    assertResult(await check({ sender: "a@pass.test", ip: "::ffff:192.0.2.5" }), "pass");
  });

  it("matches the a mechanism by A for IPv4 and AAAA for IPv6 clients", async () => {
    assertResult(await check({ sender: "a@dual.test", ip: "192.0.2.170" }), "pass");
    assertResult(await check({ sender: "a@dual.test", ip: "2001:db8::aa" }), "pass");
    assertResult(await check({ sender: "a@dual.test", ip: "2001:db8::ab" }), "fail");
  });

  it("matches the mx mechanism through the MX hosts' addresses", async () => {
    assertResult(await check({ sender: "a@mx.test", ip: "192.0.2.99" }), "pass");
    assertResult(await check({ sender: "a@mx.test", ip: "192.0.2.98" }), "fail");
  });

  it("returns softfail for ~all and neutral for ?all", async () => {
    assertResult(await check({ sender: "a@softfail.test", ip: "192.0.2.2" }), "softfail");
    assertResult(await check({ sender: "a@neutral.test", ip: "192.0.2.2" }), "neutral");
  });

  it("returns none without an SPF record or without the domain", async () => {
    assertResult(await check({ sender: "a@nospf.test", ip: "192.0.2.2" }), "none");
    assertResult(await check({ sender: "a@missing.test", ip: "192.0.2.2" }), "none");
  });

  it("returns temperror when the DNS server times out or fails", async () => {
    assertResult(await check({ sender: "a@timeout.test", ip: "192.0.2.2" }), "temperror");
    assertResult(await check({ sender: "a@servfail.test", ip: "192.0.2.2" }), "temperror");
    assertResult(await check({ sender: "a@include-broken.test", ip: "192.0.2.2" }), "temperror");
  });

  it("returns permerror for syntax errors and conflicting records", async () => {
    assertResult(await check({ sender: "a@syntax.test", ip: "192.0.2.2" }), "permerror", /cidr/);
    assertResult(await check({ sender: "a@unknown.test", ip: "192.0.2.2" }), "permerror");
    assertResult(await check({ sender: "a@two.test", ip: "192.0.2.2" }), "permerror", /multiple/);
  });

  it("returns permerror after more than 10 DNS-querying terms", async () => {
    const verdict = await check({ sender: "a@lookups.test", ip: "192.0.2.2" });
    assertResult(verdict, "permerror", /Too many DNS requests/);
    // mailauth stops at the limit: the eleventh include is never looked up.
    assert.equal(server.count("l10.lookups.test", "TXT"), 0);
  });

  it("returns permerror after more than 2 void lookups, but not after 2", async () => {
    assertResult(await check({ sender: "a@void.test", ip: "192.0.2.2" }), "permerror", /void/);
    assertResult(await check({ sender: "a@twovoid.test", ip: "192.0.2.2" }), "pass");
  });

  it("returns permerror for an include loop", async () => {
    assertResult(await check({ sender: "a@loop.test", ip: "192.0.2.2" }), "permerror");
  });

  it("follows include and redirect", async () => {
    assertResult(await check({ sender: "a@include.test", ip: "192.0.2.5" }), "pass");
    assertResult(await check({ sender: "a@include.test", ip: "198.51.100.5" }), "fail");
    assertResult(await check({ sender: "a@redirect.test", ip: "198.51.100.1" }), "pass");
    assertResult(await check({ sender: "a@redirect.test", ip: "192.0.2.5" }), "pass");
    assertResult(await check({ sender: "a@redirect.test", ip: "198.51.100.2" }), "fail");
  });

  it("expands the %{i}, %{l} and %{d} macros", async () => {
    assertResult(await check({ sender: "alice@macro.test", ip: "192.0.2.7" }), "pass");
    assertResult(await check({ sender: "bob@macro.test", ip: "192.0.2.7" }), "fail");
    assertResult(await check({ sender: "alice@macro.test", ip: "192.0.2.8" }), "fail");
    assert.equal(server.count("192.0.2.7.alice.allow.macro.test", "A"), 1);
  });

  it("expands the %{ir}, %{v} and %{d2} macros", async () => {
    assertResult(await check({ sender: "x@reverse.test", ip: "192.0.2.7" }), "pass");
    assertResult(await check({ sender: "x@reverse.test", ip: "192.0.2.6" }), "fail");
  });

  it("gives the domain's exp= explanation with a fail", async () => {
    const verdict = await check({ sender: "a@explained.test", ip: "192.0.2.66" });
    assertResult(verdict, "fail");
    assert.equal(verdict.explanation, "192.0.2.66 may not send mail for explained.test");
  });

  it("checks the HELO identity for the null sender (RFC 7208 section 2.4)", async () => {
    const pass = await check({ sender: "", helo: "mail.helo.test", ip: "192.0.2.9" });
    assertResult(pass, "pass");
    assert.equal(pass.identity, "helo");
    assert.equal(pass.domain, "mail.helo.test");
    assert.match(pass.authResults, /smtp\.helo=mail\.helo\.test/);
    assert.doesNotMatch(pass.receivedSpf, /envelope-from=/);
    assertResult(await check({ sender: "", helo: "mail.helo.test", ip: "192.0.2.10" }), "fail");
  });

  it("returns none, not an exception, for absurd senders and HELO names", async () => {
    assertResult(await check({ sender: `a@${"x".repeat(300)}.test`, ip: "192.0.2.1" }), "none");
    assertResult(await check({ sender: "a@bad..test", ip: "192.0.2.1" }), "none");
    assertResult(await check({ sender: "", helo: "[192.0.2.1]", ip: "192.0.2.1" }), "none");
    assertResult(await check({ sender: "", helo: "", ip: "192.0.2.1" }), "none");
  });

  it("returns temperror for a client address that is not an IP address", async () => {
    assertResult(await check({ sender: "a@pass.test", ip: "not-an-ip" }), "temperror");
  });

  it("answers a repeated check from the cache without any query", async () => {
    await check({ sender: "a@include.test", ip: "192.0.2.5" });
    const before = server.queries.length;
    assertResult(await check({ sender: "b@include.test", ip: "192.0.2.5" }), "pass");
    assert.equal(server.queries.length, before);
  });

  it("folds Received-SPF into lines of at most 78 characters", async () => {
    const verdict = await check({
      sender: "a.rather.long.local.part@pass.test",
      ip: "2001:db8:1::25",
    });
    for (const line of verdict.receivedSpf.split("\r\n")) {
      assert.ok(line.length <= 78, `line too long: ${line}`);
    }
    assert.match(verdict.receivedSpf, /\r\n /);
  });
});

describe("checkSpf without a DNS server", () => {
  it("returns temperror when nothing answers", async () => {
    const server = await startDnsServer({});
    const address = server.address;
    await server.close();
    const verdict = await checkSpf({
      sender: "a@pass.test",
      ip: "192.0.2.1",
      helo: "client.example",
      hostname: HOSTNAME,
      resolver: new DnsResolver({ servers: [address], timeoutMs: 200 }).resolve,
    });
    assert.equal(verdict.result, "temperror");
  });
});
