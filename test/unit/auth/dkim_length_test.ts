/**
 * A DKIM signature with a body length (`l=`) vouches only for the start of
 * the body. Text appended after it passed as the signer's: the signature
 * verified, and DMARC passed on it, under the signer's `p=reject` too.
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
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns_server.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { HOSTNAME, spoolFile } from "./fixtures.ts";

const BODY = "Your statement is ready.\r\n";
const MESSAGE = [
  "From: alerts@bank.test",
  "To: you@postern.test",
  "Subject: Statement",
  "Date: Mon, 01 Jan 2024 12:00:00 +0000",
  "Message-ID: <s.1@bank.test>",
  "",
  BODY,
].join("\r\n");

describe("DKIM signatures with a body length", () => {
  let dns: TestDnsServer;
  let resolver: DnsResolver;
  let dir: string;
  let key: GeneratedDkimKey;
  let n = 0;

  before(async () => {
    dir = await makeTempDir();
    key = await generateDkimKey({
      dir: dkimKeyDir(dir, "bank.test"),
      domain: "bank.test",
      selector: "s1",
    });
    dns = await startDnsServer({
      [key.record.name]: { TXT: [key.record.strings] },
      "_dmarc.bank.test": { TXT: ["v=DMARC1; p=reject"] },
    });
    resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 1000 });
  });
  after(async () => {
    await dns?.close();
    if (dir) await removeDir(dir);
  });

  /** The message signed with l= over its whole body, then `appended`, checked. */
  async function check(appended: string) {
    const signed = await dkimSign(
      MESSAGE,
      {
        signatureData: [{
          signingDomain: "bank.test",
          selector: "s1",
          privateKey: key.privateKey,
          canonicalization: "relaxed/relaxed",
          maxBodyLength: BODY.length,
        }],
      } as Parameters<typeof dkimSign>[1],
    );
    assert.match(signed.signatures, /l=\d+/);
    const file = await spoolFile(dir, `m${n++}`, signed.signatures + MESSAGE + appended);
    return await authenticateMessage({
      ...file,
      sender: "bounce@elsewhere.test",
      ip: "192.0.2.1",
      helo: "client.test",
      hostname: HOSTNAME,
      resolver: resolver.resolve,
      spf: null,
    });
  }

  it("counts for DMARC when nothing follows the signed part", async () => {
    const summary = await check("");
    assert.match(summary.authenticationResults, /dkim=pass/);
    assert.equal(summary.dmarc?.result, "pass");
  });

  it("does not count for DMARC when text follows it: the appended text is nobody's", async () => {
    const summary = await check("\r\nURGENT: wire the money to account 12345.\r\n");
    assert.equal(summary.dmarc?.result, "fail");
    assert.equal(summary.dmarcReject, true);
  });
});
