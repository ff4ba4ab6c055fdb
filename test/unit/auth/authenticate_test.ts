import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { authenticate } from "mailauth";
import {
  authenticateMessage,
  type AuthenticateOptions,
  checkSpf,
  dkimKeyDir,
  dkimSign,
  type GeneratedDkimKey,
  generateDkimKey,
} from "../../../src/auth/mod.ts";
import { mailauthResolver } from "../../../src/auth/mailauth.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns_server.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { HOSTNAME, message, spoolFile } from "./fixtures.ts";

// aligned.test publishes SPF for 192.0.2.0/24 and DMARC p=reject; relaxed.test
// p=none; strict.test requires strict DKIM alignment; other.test only SPF.
const ZONE = {
  "aligned.test": { TXT: ["v=spf1 ip4:192.0.2.0/24 -all"] },
  "_dmarc.aligned.test": { TXT: ["v=DMARC1; p=reject"] },
  "relaxed.test": { TXT: ["v=spf1 ip4:192.0.2.0/24 -all"] },
  "_dmarc.relaxed.test": { TXT: ["v=DMARC1; p=none"] },
  "strict.test": { TXT: ["v=spf1 -all"] },
  "_dmarc.strict.test": { TXT: ["v=DMARC1; p=reject; adkim=s"] },
  "other.test": { TXT: ["v=spf1 ip4:198.51.100.0/24 -all"] },
  "slowkey._domainkey.aligned.test": { TXT: ["v=DKIM1; p=x"], mode: "timeout" as const },
};

describe("authenticateMessage", () => {
  let server: TestDnsServer;
  let resolver: DnsResolver;
  let dir: string;
  const keys: Record<string, GeneratedDkimKey> = {};
  let n = 0;

  before(async () => {
    server = await startDnsServer(structuredClone(ZONE));
    resolver = new DnsResolver({ servers: [server.address], timeoutMs: 400 });
    dir = await makeTempDir();
    // One key per signing domain, published on the loopback server.
    for (const domain of ["aligned.test", "mail.aligned.test", "third.test", "mail.strict.test"]) {
      const key = await generateDkimKey({ dir: dkimKeyDir(dir, domain), domain, selector: "s1" });
      server.zone[key.record.name] = { TXT: [key.record.strings] };
      keys[domain] = key;
    }
    const ed = await generateDkimKey({
      dir: dkimKeyDir(dir, "aligned.test"),
      domain: "aligned.test",
      selector: "ed",
      algorithm: "ed25519",
    });
    server.zone[ed.record.name] = { TXT: [ed.record.strings] };
    keys["ed"] = ed;
  });
  after(async () => {
    await server.close();
    await removeDir(dir);
  });

  /** Spools `text`, signed by `signer` (a key of `keys`) unless undefined. */
  async function spool(text: string, signer?: string, tamper?: (s: string) => string) {
    const name = `m${n++}`;
    let signed = text;
    if (signer) {
      const key = keys[signer]!;
      const plain = await spoolFile(dir, `${name}.plain`, text);
      const header = await dkimSign(plain.path, plain.offset, {
        domain: key.domain,
        selector: key.selector,
        privateKey: key.privateKey,
      });
      signed = header + text;
    }
    return await spoolFile(dir, name, tamper ? tamper(signed) : signed);
  }

  function run(
    file: { path: string; offset: number },
    envelope: { sender: string; ip: string },
    extra: Partial<AuthenticateOptions> = {},
  ) {
    return authenticateMessage({
      ...file,
      ...envelope,
      helo: "client.example",
      hostname: HOSTNAME,
      resolver: resolver.resolve,
      ...extra,
    });
  }

  it("passes DKIM for a message signed with a published key", async () => {
    const file = await spool(message("alice@aligned.test"), "aligned.test");
    const summary = await run(file, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    assert.equal(summary.dkim.length, 1);
    assert.equal(summary.dkim[0]!.result, "pass", summary.dkim[0]!.comment);
    assert.equal(summary.dkim[0]!.domain, "aligned.test");
    assert.equal(summary.dkim[0]!.selector, "s1");
    assert.equal(summary.dkim[0]!.algorithm, "rsa-sha256");
    assert.equal(summary.dkim[0]!.aligned, "aligned.test");
  });

  it("passes DKIM for an Ed25519 signature (RFC 8463)", async () => {
    const file = await spool(message("alice@aligned.test"), "ed");
    const summary = await run(file, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    assert.equal(summary.dkim[0]!.result, "pass", summary.dkim[0]!.comment);
    assert.equal(summary.dkim[0]!.algorithm, "ed25519-sha256");
  });

  it("fails DKIM when the body or a signed header was changed", async () => {
    const body = await spool(
      message("alice@aligned.test"),
      "aligned.test",
      (s) => s.replace("see you at noon", "see you at one"),
    );
    const bodySummary = await run(body, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    assert.notEqual(bodySummary.dkim[0]!.result, "pass");
    assert.match(bodySummary.dkim[0]!.comment ?? "", /body hash/);
    const subject = await spool(
      message("alice@aligned.test"),
      "aligned.test",
      (s) => s.replace("Subject: Lunch", "Subject: Dinner"),
    );
    const subjectSummary = await run(subject, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    assert.equal(subjectSummary.dkim[0]!.result, "fail");
    assert.equal(subjectSummary.dmarc?.result, "fail");
    assert.equal(subjectSummary.dmarcReject, true);
  });

  it("reports an unsigned message as dkim=none", async () => {
    const file = await spool(message("alice@aligned.test"));
    const summary = await run(file, { sender: "alice@aligned.test", ip: "192.0.2.5" });
    assert.deepEqual(summary.dkim, [{
      result: "none",
      aligned: false,
      comment: "message not signed",
    }]);
  });

  it("passes DMARC through an aligned DKIM signature when SPF fails", async () => {
    const file = await spool(message("alice@aligned.test"), "aligned.test");
    const summary = await run(file, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    assert.equal(summary.spf?.result, "fail");
    assert.equal(summary.dmarc?.result, "pass");
    assert.equal(summary.dmarc?.policy, "reject");
    assert.equal(summary.dmarcReject, false);
  });

  it("passes DMARC through aligned SPF for an unsigned message", async () => {
    const file = await spool(message("alice@aligned.test"));
    const summary = await run(file, { sender: "bounces@aligned.test", ip: "192.0.2.5" });
    assert.equal(summary.spf?.result, "pass");
    assert.equal(summary.dmarc?.result, "pass");
    assert.equal(summary.dmarcReject, false);
  });

  it("fails DMARC when SPF passes for another domain, and flags p=reject", async () => {
    const file = await spool(message("alice@aligned.test"));
    const summary = await run(file, { sender: "list@other.test", ip: "198.51.100.9" });
    assert.equal(summary.spf?.result, "pass");
    assert.equal(summary.dmarc?.result, "fail");
    assert.equal(summary.dmarc?.policy, "reject");
    assert.equal(summary.dmarc?.headerFrom, "aligned.test");
    assert.equal(summary.dmarcReject, true);
  });

  it("fails DMARC for a valid signature of an unrelated domain", async () => {
    const file = await spool(message("alice@aligned.test"), "third.test");
    const summary = await run(file, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    assert.equal(summary.dkim[0]!.result, "pass");
    assert.equal(summary.dkim[0]!.aligned, false);
    assert.equal(summary.dmarc?.result, "fail");
    assert.equal(summary.dmarcReject, true);
  });

  it("aligns a subdomain's signature in relaxed mode but not under adkim=s", async () => {
    const relaxed = await spool(message("alice@aligned.test"), "mail.aligned.test");
    const relaxedSummary = await run(relaxed, { sender: "a@aligned.test", ip: "198.51.100.9" });
    assert.equal(relaxedSummary.dmarc?.result, "pass");
    const strict = await spool(message("alice@strict.test"), "mail.strict.test");
    const strictSummary = await run(strict, { sender: "a@strict.test", ip: "198.51.100.9" });
    assert.equal(strictSummary.dkim[0]!.result, "pass");
    assert.equal(strictSummary.dmarc?.result, "fail");
    assert.equal(strictSummary.dmarcReject, true);
  });

  it("does not flag a DMARC failure under p=none", async () => {
    const file = await spool(message("alice@relaxed.test"));
    const summary = await run(file, { sender: "a@relaxed.test", ip: "198.51.100.9" });
    assert.equal(summary.dmarc?.result, "fail");
    assert.equal(summary.dmarc?.policy, "none");
    assert.equal(summary.dmarcReject, false);
  });

  it("skips DMARC for a message without a From domain", async () => {
    const file = await spool("To: bob@postern.test\r\nSubject: x\r\n\r\nbody\r\n");
    const summary = await run(file, { sender: "a@aligned.test", ip: "192.0.2.5" });
    assert.equal(summary.dmarc, undefined);
    assert.equal(summary.dmarcReject, false);
    assert.ok(summary.dmarcSkipReason);
  });

  it("reuses the SPF verdict from MAIL FROM without asking DNS again", async () => {
    const spf = await checkSpf({
      sender: "bounces@aligned.test",
      ip: "192.0.2.5",
      helo: "client.example",
      hostname: HOSTNAME,
      resolver: resolver.resolve,
    });
    const file = await spool(message("alice@aligned.test"));
    // A fresh resolver has nothing cached: any SPF lookup would reach the server.
    const fresh = new DnsResolver({ servers: [server.address], timeoutMs: 400 });
    const before = server.count("aligned.test", "TXT");
    const summary = await run(file, { sender: "bounces@aligned.test", ip: "192.0.2.5" }, {
      spf,
      resolver: fresh.resolve,
    });
    assert.equal(server.count("aligned.test", "TXT"), before);
    assert.equal(summary.spf, spf);
    assert.equal(summary.dmarc?.result, "pass");
  });

  it("writes one Authentication-Results field for the whole verdict", async () => {
    const file = await spool(message("alice@aligned.test"), "aligned.test");
    const summary = await run(file, { sender: "alice@aligned.test", ip: "198.51.100.9" });
    const field = summary.authenticationResults;
    assert.match(field, /^Authentication-Results: mx\.postern\.test;\r\n /);
    assert.equal(field.match(/Authentication-Results:/g)?.length, 1);
    const unfolded = field.replace(/\r\n(?=[ \t])/g, "");
    assert.match(unfolded, /; dkim=pass .*header\.d=aligned\.test/);
    assert.match(unfolded, /; spf=fail .*smtp\.mailfrom=alice@aligned\.test/);
    assert.match(unfolded, /; dmarc=pass .*header\.from=aligned\.test/);
    assert.doesNotMatch(unfolded, /;\s*$/);
    for (const line of field.split("\r\n")) assert.ok(line.length <= 78, line);
  });

  it("writes the same results as mailauth's own authenticate()", async () => {
    const text = message("alice@aligned.test");
    const file = await spool(text, "aligned.test");
    const envelope = { sender: "alice@aligned.test", ip: "198.51.100.9" };
    const ours = await run(file, envelope);
    const theirs = await authenticate(
      (await readFile(file.path)).subarray(file.offset),
      {
        ...envelope,
        helo: "client.example",
        mta: HOSTNAME,
        resolver: mailauthResolver(resolver.resolve),
        disableBimi: true,
      },
    );
    const field = (headers: string) =>
      headers.replace(/\r\n(?=[ \t])/g, "").split("\r\n").find((h) =>
        h.startsWith("Authentication-Results:")
      )!.split(/;\s*/).map((part) => part.trim());
    assert.deepEqual(field(ours.authenticationResults), field(theirs.headers));
  });

  it("reports temperror, without throwing, when the key lookup times out", async () => {
    const text = message("alice@aligned.test");
    const key = keys["aligned.test"]!;
    const plain = await spoolFile(dir, "slow.plain", text);
    const header = await dkimSign(plain.path, plain.offset, {
      domain: "aligned.test",
      selector: "slowkey",
      privateKey: key.privateKey,
    });
    const file = await spoolFile(dir, "slow", header + text);
    const summary = await run(file, { sender: "a@aligned.test", ip: "198.51.100.9" });
    assert.equal(summary.dkim[0]!.result, "temperror");
    assert.equal(summary.dmarc?.result, "fail");
  });

  it("signs and verifies only the bytes from the offset on", async () => {
    // Were the offset ignored, the decoy's From and body would be signed or verified.
    const decoy = "From: mallory@third.test\r\nSubject: decoy\r\n\r\ndecoy body\r\n";
    const text = message("alice@aligned.test");
    const key = keys["aligned.test"]!;
    const plain = await spoolFile(dir, "decoy.plain", text, decoy);
    const header = await dkimSign(plain.path, plain.offset, {
      domain: key.domain,
      selector: key.selector,
      privateKey: key.privateKey,
    });
    const file = await spoolFile(dir, "decoy", header + text, decoy);
    const summary = await run(file, { sender: "a@other.test", ip: "198.51.100.9" });
    assert.equal(summary.dkim[0]!.result, "pass", summary.dkim[0]!.comment);
    assert.equal(summary.dmarc?.headerFrom, "aligned.test");
    assert.equal(summary.dmarc?.result, "pass");
  });

  it("rejects when the message file cannot be read", async () => {
    await assert.rejects(
      run({ path: `${dir}/missing`, offset: 0 }, { sender: "", ip: "192.0.2.1" }),
    );
  });
});
