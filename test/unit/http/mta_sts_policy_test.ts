/**
 * Tests of the MTA-STS policy Postern publishes (RFC 8461), read back with
 * mailauth's parser, and of the records to publish with it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePolicy } from "mailauth/lib/mta-sts.js";
import {
  mtaStsRecord,
  policyId,
  policyText,
  tlsRptRecord,
} from "../../../src/http/mta_sts_policy.ts";
import { mtaStsApp } from "../../../src/http/well_known.ts";
import type { DomainConfig, MtaStsConfig } from "../../../src/config/mod.ts";

const policy: MtaStsConfig = {
  mode: "enforce",
  maxAgeSeconds: 604_800,
  mx: ["mx1.example.test", "*.mx.example.test"],
  tlsRptRua: "mailto:tlsrpt@example.test",
};

describe("policyText()", () => {
  it("is a policy mailauth's parser reads back, in CRLF lines", () => {
    const text = policyText(policy);
    assert.ok(text.split("\r\n").slice(0, -1).every((line) => !line.includes("\n")));
    const parsed = parsePolicy(text);
    assert.equal(parsed.version, "STSv1");
    assert.equal(parsed.mode, "enforce");
    assert.deepEqual(parsed.mx, policy.mx);
    assert.equal(parsed.maxAge, 604_800);
  });
});

describe("policyId()", () => {
  it("is 1-32 letters and digits, and changes whenever the policy does", () => {
    const id = policyId(policy);
    assert.match(id, /^[A-Za-z0-9]{1,32}$/);
    assert.equal(policyId({ ...policy }), id);
    assert.notEqual(policyId({ ...policy, mode: "testing" }), id);
    assert.notEqual(policyId({ ...policy, mx: ["mx1.example.test"] }), id);
    assert.notEqual(policyId({ ...policy, maxAgeSeconds: 86_400 }), id);
    assert.equal(mtaStsRecord(policy), `v=STSv1; id=${id}`);
    assert.equal(tlsRptRecord(policy), "v=TLSRPTv1; rua=mailto:tlsrpt@example.test");
  });
});

describe("mtaStsApp()", () => {
  const domains = new Map([["example.test", {
    name: "example.test",
    mtaSts: policy,
  }]]) as unknown as ReadonlyMap<string, DomainConfig>;
  const app = mtaStsApp(() => domains);

  it("serves the policy of the domain named by the Host header", async () => {
    const res = await app.request("/.well-known/mta-sts.txt", {
      headers: { host: "MTA-STS.example.test:443" },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    assert.equal(await res.text(), policyText(policy));
  });

  it("answers 404 for other hosts and paths", async () => {
    for (
      const [path, host] of [
        ["/.well-known/mta-sts.txt", "mta-sts.other.test"],
        ["/.well-known/mta-sts.txt", "example.test"],
        ["/", "mta-sts.example.test"],
      ]
    ) {
      const res = await app.request(path!, { headers: { host: host! } });
      assert.equal(res.status, 404, `${host}${path}`);
    }
  });
});
