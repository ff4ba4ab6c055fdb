import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  authenticateMessage,
  decideDmarc,
  dkimKeyDir,
  dkimSign,
  type GeneratedDkimKey,
  generateDkimKey,
  MAX_AUTHOR_DOMAINS,
} from "../../../src/auth/mod.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../../support/dns_server.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { HOSTNAME, spoolFile } from "./fixtures.ts";

// rej.test: p=reject; relay.test: SPF passes for the client, no DMARC;
// quar.test: p=quarantine; flaky.test: p=reject, its DKIM key answers
// SERVFAIL; broken.test: its DMARC record answers SERVFAIL.
const ZONE: Zone = {
  "rej.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "_dmarc.rej.test": { TXT: ["v=DMARC1; p=reject"] },
  "relay.test": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
  "quar.test": { TXT: ["v=spf1 -all"] },
  "_dmarc.quar.test": { TXT: ["v=DMARC1; p=quarantine"] },
  "flaky.test": { TXT: ["v=spf1 -all"] },
  "_dmarc.flaky.test": { TXT: ["v=DMARC1; p=reject"] },
  "broken.test": { TXT: ["v=spf1 -all"] },
  "_dmarc.broken.test": { TXT: ["v=DMARC1; p=reject"], mode: "servfail" },
};

function text(fromLines: string[], body = "Hello\r\n"): string {
  return [
    ...fromLines,
    "To: bob@postern.test",
    "Subject: Pay this",
    "Date: Mon, 01 Jan 2024 12:00:00 +0000",
    "Message-ID: <pay.1@relay.test>",
    "",
    body,
  ].join("\r\n");
}

describe("DMARC with several authors, and temporary failures", () => {
  let dns: TestDnsServer;
  let resolver: DnsResolver;
  let dir: string;
  let flakyKey: GeneratedDkimKey;
  let n = 0;

  before(async () => {
    dns = await startDnsServer(structuredClone(ZONE));
    resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 1000 });
    dir = await makeTempDir();
    flakyKey = await generateDkimKey({
      dir: dkimKeyDir(dir, "flaky.test"),
      domain: "flaky.test",
      selector: "s1",
    });
    dns.zone[flakyKey.record.name] = { TXT: [flakyKey.record.strings], mode: "servfail" };
  });
  after(async () => {
    await dns?.close();
    if (dir) await removeDir(dir);
  });

  async function check(message: string, signer?: GeneratedDkimKey) {
    let signed = message;
    if (signer) {
      const plain = await spoolFile(dir, `m${n++}.plain`, message);
      signed = await dkimSign(plain.path, plain.offset, signer) + message;
    }
    const file = await spoolFile(dir, `m${n++}`, signed);
    // The envelope sender's SPF passes (relay.test lists 127.0.0.1).
    return await authenticateMessage({
      ...file,
      sender: "bounce@relay.test",
      ip: "127.0.0.1",
      helo: "client.test",
      hostname: HOSTNAME,
      resolver: resolver.resolve,
    });
  }

  it("refuses a single From of a p=reject domain without alignment (control)", async () => {
    const summary = await check(text(["From: <ceo@rej.test>"]));
    const decision = decideDmarc(summary, true);
    assert.equal(decision.action, "reject");
    assert.ok(decision.action === "reject" && decision.reason === "dmarc_reject");
  });

  it("refuses two From fields, in either order, with 550 5.7.1", async () => {
    for (
      const fields of [
        ["From: <ceo@rej.test>", "From: <x@relay.test>"],
        ["From: <x@relay.test>", "From: <ceo@rej.test>"],
      ]
    ) {
      const summary = await check(text(fields));
      assert.equal(summary.fromFields, 2);
      assert.equal(summary.dmarcSkipReason, "multiple-from-fields");
      // Each Author Domain still has its verdict, for the header and the log.
      assert.deepEqual(
        summary.dmarcVerdicts.map((v) => [v.headerFrom, v.result]).sort(),
        [["rej.test", "fail"], ["relay.test", "none"]],
      );
      assert.match(summary.authenticationResults, /dmarc=fail .*header\.from=rej\.test/);
      const decision = decideDmarc(summary, true);
      assert.equal(decision.action, "reject");
      if (decision.action !== "reject") continue;
      assert.equal(decision.reason, "dmarc_multiple_from");
      assert.deepEqual([decision.reply.code, decision.reply.enhanced], [550, "5.7.1"]);
    }
  });

  it("evaluates each domain of one From field: the strictest failing policy applies", async () => {
    for (
      const from of [
        "From: <ceo@rej.test>, <x@relay.test>",
        "From: <x@relay.test>, <ceo@rej.test>",
        "From: <y@quar.test>, <ceo@rej.test>, <x@relay.test>",
      ]
    ) {
      const summary = await check(text([from]));
      assert.equal(summary.fromFields, 1);
      assert.equal(summary.dmarcSkipReason, "multiple-author-domains");
      assert.equal(summary.dmarc?.headerFrom, "rej.test");
      assert.equal(summary.dmarc?.policy, "reject");
      assert.equal(summary.dmarcReject, true);
      assert.match(summary.authenticationResults, /dmarc=fail .*header\.from=rej\.test/);
      assert.match(summary.authenticationResults, /dmarc=none header\.from=relay\.test/);
      const decision = decideDmarc(summary, true);
      assert.ok(decision.action === "reject", JSON.stringify(decision));
      assert.equal(decision.reason, "dmarc_reject");
      assert.equal(decision.reply.text, "Message rejected: DMARC policy of rej.test says reject");
    }
  });

  it("refuses a From with text but no author domain; accepts an empty or missing From", async () => {
    const encoded = await check(text(["From: =?utf-8?b?Y2VvQHJlai50ZXN0?="]));
    assert.equal(encoded.fromHasText, true);
    const decision = decideDmarc(encoded, true);
    assert.ok(decision.action === "reject" && decision.reason === "dmarc_no_author");
    assert.equal(decideDmarc(encoded, false).action, "accept");
    const empty = await check(text(["From: "]));
    assert.equal(empty.fromHasText, false);
    assert.equal(decideDmarc(empty, true).action, "accept");
    const missing = await check(text([]));
    assert.equal(missing.fromFields, 0);
    assert.equal(decideDmarc(missing, true).action, "accept");
  });

  it("accepts several authors when every failing policy is weaker than reject", async () => {
    const summary = await check(text(["From: <y@quar.test>, <x@relay.test>"]));
    assert.equal(summary.dmarc?.headerFrom, "quar.test");
    assert.equal(summary.dmarc?.policy, "quarantine");
    assert.equal(decideDmarc(summary, true).action, "accept");
  });

  it(`refuses a From field with more than ${MAX_AUTHOR_DOMAINS} domains`, async () => {
    const many = Array.from({ length: MAX_AUTHOR_DOMAINS + 1 }, (_, i) => `<a@d${i}.test>`);
    const summary = await check(text([`From: ${many.join(", ")}`]));
    assert.equal(summary.authorDomainsUnchecked, 1);
    assert.equal(summary.dmarcVerdicts.length, MAX_AUTHOR_DOMAINS);
    const decision = decideDmarc(summary, true);
    assert.ok(decision.action === "reject" && decision.reason === "dmarc_too_many_authors");
  });

  it("defers (451 4.7.5) when the DKIM key lookup of the author's signature fails", async () => {
    const summary = await check(text(["From: <ceo@flaky.test>"]), flakyKey);
    assert.equal(summary.dkim[0]?.result, "temperror");
    assert.equal(summary.dmarc?.result, "fail");
    assert.equal(summary.dmarcReject, true);
    const decision = decideDmarc(summary, true);
    assert.ok(decision.action === "defer", JSON.stringify(decision));
    assert.deepEqual([decision.reply.code, decision.reply.enhanced], [451, "4.7.5"]);
    assert.equal(decision.reason, "dmarc_temperror");
  });

  it("still refuses when the failing temperror is of an unrelated signing domain", async () => {
    const summary = await check(text(["From: <ceo@rej.test>"]), flakyKey);
    assert.equal(summary.dkim[0]?.result, "temperror");
    const decision = decideDmarc(summary, true);
    assert.ok(decision.action === "reject" && decision.reason === "dmarc_reject");
  });

  it("defers (451 4.4.3) when the DMARC record itself cannot be looked up", async () => {
    const summary = await check(text(["From: <ceo@broken.test>"]));
    assert.equal(summary.dmarc?.result, "temperror");
    const decision = decideDmarc(summary, true);
    assert.ok(decision.action === "defer", JSON.stringify(decision));
    assert.deepEqual([decision.reply.code, decision.reply.enhanced], [451, "4.4.3"]);
  });

  it("accepts everything with auth.dmarc_reject: false", async () => {
    const summary = await check(text(["From: <ceo@rej.test>", "From: <x@relay.test>"]));
    assert.deepEqual(decideDmarc(summary, false), { action: "accept" });
  });
});
