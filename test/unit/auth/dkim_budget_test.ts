/**
 * The DKIM check of one message looks up at most MAX_DKIM_KEY_LOOKUPS keys.
 * Before, every DKIM-Signature field's key was looked up, one after the
 * other: signatures whose key names never answer held the session for one
 * DNS timeout each, without end, and each added a row to our
 * Authentication-Results field.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { dkimSign } from "mailauth/lib/dkim/sign.js";
import {
  authenticateMessage,
  dkimKeyDir,
  type GeneratedDkimKey,
  generateDkimKey,
} from "../../../src/auth/mod.ts";
import { budgetedResolver, MAX_DKIM_KEY_LOOKUPS } from "../../../src/auth/dkim_budget.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns_server.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { HOSTNAME, message, spoolFile } from "./fixtures.ts";

const SIGNATURES = 25;

describe("the DKIM budget of a message", () => {
  let dns: TestDnsServer;
  let resolver: DnsResolver;
  let dir: string;
  let key: GeneratedDkimKey;

  before(async () => {
    dir = await makeTempDir();
    key = await generateDkimKey({
      dir: dkimKeyDir(dir, "evil.test"),
      domain: "evil.test",
      selector: "s0",
    });
    dns = await startDnsServer({});
    // Every selector's key answers SERVFAIL: a lookup each, and no verdict.
    for (let i = 0; i < SIGNATURES; i++) {
      dns.zone[`s${i}._domainkey.evil.test`] = { TXT: [key.record.strings], mode: "servfail" };
    }
    resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 1000 });
  });
  after(async () => {
    await dns?.close();
    if (dir) await removeDir(dir);
  });

  it(`looks up the keys of the first ${MAX_DKIM_KEY_LOOKUPS} signatures only, and reports those`, async () => {
    const text = message("From: someone@evil.test");
    const signed = await dkimSign(
      text,
      {
        signatureData: Array.from({ length: SIGNATURES }, (_, i) => ({
          signingDomain: "evil.test",
          selector: `s${i}`,
          privateKey: key.privateKey,
          canonicalization: "relaxed/relaxed",
        })),
      } as Parameters<typeof dkimSign>[1],
    );
    assert.equal(signed.signatures.match(/DKIM-Signature:/g)?.length, SIGNATURES);
    const file = await spoolFile(dir, "m", signed.signatures + text);
    const summary = await authenticateMessage({
      ...file,
      sender: "bounce@evil.test",
      ip: "192.0.2.1",
      helo: "client.test",
      hostname: HOSTNAME,
      resolver: resolver.resolve,
      spf: null,
    });
    const asked = dns.queries.filter((q) => q.name.endsWith("._domainkey.evil.test"));
    assert.equal(new Set(asked.map((q) => q.name)).size, MAX_DKIM_KEY_LOOKUPS);
    assert.equal(summary.dkim.length, MAX_DKIM_KEY_LOOKUPS);
    assert.equal(summary.authenticationResults.match(/dkim=/g)?.length, MAX_DKIM_KEY_LOOKUPS);
  });

  it("refuses lookups once the time budget is spent, counted from the first", async () => {
    let clock = 0;
    const seen: string[] = [];
    const budgeted = budgetedResolver((name) => {
      seen.push(name);
      return Promise.resolve([]);
    }, () => clock);
    await budgeted("a", "TXT");
    clock = 15_001;
    await assert.rejects(budgeted("b", "TXT"), { code: "EPOSTERN_DKIM_BUDGET" });
    assert.deepEqual(seen, ["a"]);
  });
});
