import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  checkSpf,
  decideSpf,
  DEFAULT_SPF_POLICY,
  spfPolicy,
  type SpfResult,
  type SpfVerdict,
} from "../../../src/auth/mod.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns_server.ts";

/** A verdict as checkSpf() shapes it, for the policy alone. */
function verdict(result: SpfResult, extra: Partial<SpfVerdict> = {}): SpfVerdict {
  return {
    result,
    identity: "mailfrom",
    domain: "example.org",
    comment: `mx.postern.test: the ${result} comment`,
    receivedSpf: `Received-SPF: ${result}`,
    authResults: `spf=${result}`,
    ...extra,
  };
}

const ours = (domain: string) => domain === "postern.test";

describe("decideSpf", () => {
  it("decideSpf() rejects fail with 550 5.7.23 by default", () => {
    const decision = decideSpf(verdict("fail"));
    assert.equal(decision.action, "reject");
    assert.equal(decision.reason, "spf_fail");
    assert.deepEqual(decision.reply, {
      code: 550,
      enhanced: "5.7.23",
      text: "SPF check failed: the fail comment",
    });
  });

  it("decideSpf() defers temperror with 451 4.4.3 by default", () => {
    const decision = decideSpf(verdict("temperror"));
    assert.equal(decision.action, "defer");
    assert.equal(decision.reply?.code, 451);
    assert.equal(decision.reply?.enhanced, "4.4.3");
  });

  it("decideSpf() accepts every other result by default", () => {
    for (const result of ["pass", "softfail", "neutral", "none", "permerror"] as const) {
      const decision = decideSpf(verdict(result));
      assert.equal(decision.action, "accept", result);
      assert.equal(decision.reply, undefined);
      assert.equal(decision.reason, `spf_${result}`);
    }
  });

  it("decideSpf() rejects fail and softfail for one of our own domains", () => {
    for (const result of ["fail", "softfail"] as const) {
      const decision = decideSpf(verdict(result, { domain: "postern.test" }), undefined, ours);
      assert.equal(decision.action, "reject", result);
      assert.equal(decision.reason, "spf_local_domain");
      assert.equal(decision.reply?.code, 550);
      assert.equal(decision.reply?.enhanced, "5.7.23");
      assert.match(decision.reply!.text, /postern\.test is a local domain/);
    }
    const elsewhere = decideSpf(verdict("softfail"), undefined, ours);
    assert.equal(elsewhere.action, "accept");
    for (const result of ["pass", "neutral", "none", "permerror"] as const) {
      const own = decideSpf(verdict(result, { domain: "postern.test" }), undefined, ours);
      assert.equal(own.action, "accept", result);
    }
  });

  it("decideSpf() follows configured actions", () => {
    const policy = spfPolicy({
      actions: { softfail: "reject", permerror: "defer", fail: "accept" },
    });
    assert.equal(decideSpf(verdict("fail"), policy).action, "accept");
    const softfail = decideSpf(verdict("softfail"), policy);
    assert.equal(softfail.action, "reject");
    assert.equal(softfail.reply?.enhanced, "5.7.23");
    assert.match(softfail.reply!.text, /^SPF check result softfail: /);
    const permerror = decideSpf(verdict("permerror"), policy);
    assert.equal(permerror.action, "defer");
    assert.deepEqual([permerror.reply?.code, permerror.reply?.enhanced], [451, "4.7.24"]);
    const rejectPermerror = decideSpf(
      verdict("permerror"),
      spfPolicy({ actions: { permerror: "reject" } }),
    );
    assert.deepEqual([rejectPermerror.reply?.code, rejectPermerror.reply?.enhanced], [
      550,
      "5.7.24",
    ]);
    // Untouched results keep their defaults.
    assert.equal(decideSpf(verdict("temperror"), policy).action, "defer");
  });

  it("decideSpf() lets the local-domain rule be narrowed or turned off", () => {
    const own = verdict("softfail", { domain: "postern.test" });
    assert.equal(decideSpf(own, spfPolicy({ localDomainReject: ["fail"] }), ours).action, "accept");
    assert.equal(decideSpf(own, spfPolicy({ localDomainReject: [] }), ours).action, "accept");
    assert.equal(decideSpf(own, spfPolicy(), ours).action, "reject");
  });

  it("spfPolicy() does not change the defaults", () => {
    const policy = spfPolicy({ actions: { pass: "reject" } });
    (policy.localDomainReject as SpfResult[]).push("pass");
    assert.equal(DEFAULT_SPF_POLICY.actions.pass, "accept");
    assert.deepEqual([...DEFAULT_SPF_POLICY.localDomainReject], ["fail", "softfail"]);
  });

  it("decideSpf() keeps reply text to one printable line", () => {
    const decision = decideSpf(verdict("fail", {
      explanation: "line one\r\n550 injected\u0000 " + "x".repeat(500),
    }));
    const text = decision.reply!.text;
    assert.match(text, /^[\x20-\x7e]+$/);
    assert.ok(text.length <= 400);
  });
});

describe("decideSpf with real SPF verdicts", () => {
  let server: TestDnsServer;
  before(async () => {
    server = await startDnsServer({
      "example.org": { TXT: ["v=spf1 ip4:192.0.2.1 exp=why.example.org -all"] },
      "why.example.org": { TXT: ["See https://example.org/spf (%{i})"] },
      "postern.test": { TXT: ["v=spf1 ip4:192.0.2.25 ~all"] },
    });
  });
  after(async () => {
    await server.close();
  });

  async function decide(sender: string, ip: string) {
    const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 500 });
    const v = await checkSpf({
      sender,
      ip,
      helo: "client.example",
      hostname: "mx.postern.test",
      resolver: resolver.resolve,
    });
    return decideSpf(v, spfPolicy(), ours);
  }

  it("quotes the domain's explanation as third-party text in the 550 reply", async () => {
    const decision = await decide("a@example.org", "198.51.100.3");
    assert.equal(decision.action, "reject");
    assert.equal(
      decision.reply?.text,
      "SPF check failed: domain of a@example.org does not designate 198.51.100.3 as permitted " +
        "sender; example.org explains: See https://example.org/spf (198.51.100.3)",
    );
  });

  it("rejects a softfail for our own domain and accepts its pass", async () => {
    assert.equal((await decide("boss@postern.test", "198.51.100.3")).reason, "spf_local_domain");
    assert.equal((await decide("boss@postern.test", "192.0.2.25")).action, "accept");
  });
});
