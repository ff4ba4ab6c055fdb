/**
 * DMARC that a second author cannot bypass, and that a temporary DNS
 * failure does not turn into a permanent refusal (issue 16, defects 1 and
 * 2): the real server, a real loopback DNS server, swaks.
 *
 * `_dmarc.rej.test` publishes p=reject; the envelope sender's SPF passes
 * (relay.test lists 127.0.0.1); the messages carry no signature unless
 * said otherwise.
 */

import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  dkimKeyDir,
  dkimSign,
  type GeneratedDkimKey,
  generateDkimKey,
} from "../../src/auth/mod.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns_server.ts";
import { cleanup, type Server, startServer, swaks, tempDir } from "./harness.ts";

const ZONE: Zone = {
  "rej.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "_dmarc.rej.test": { TXT: ["v=DMARC1; p=reject"] },
  "relay.test": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
  "flaky.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "_dmarc.flaky.test": { TXT: ["v=DMARC1; p=reject"] },
};

function message(fromLines: string[], subject: string): string {
  return [
    ...fromLines,
    "To: alice@example.test",
    `Subject: ${subject}`,
    "Date: Mon, 01 Jan 2024 12:00:00 +0000",
    `Message-ID: <${subject.replace(/\W+/g, ".")}@relay.test>`,
    "",
    "Please pay the attached invoice today.",
    "",
  ].join("\r\n");
}

describe("DMARC: several authors and temporary failures", () => {
  let dns: TestDnsServer;
  let server: Server;
  let dir: string;
  let flaky: GeneratedDkimKey;
  let files = 0;

  before(async () => {
    dir = await tempDir("postern-dmarc-");
    dns = await startDnsServer(structuredClone(ZONE));
    flaky = await generateDkimKey({
      dir: dkimKeyDir(dir, "flaky.test"),
      domain: "flaky.test",
      selector: "s1",
    });
    // The key is published, but its lookup fails for now.
    dns.zone[flaky.record.name] = { TXT: [flaky.record.strings], mode: "servfail" };
    server = await startServer({
      config: {
        "postern.yaml": [
          "hostname: mx.postern.test",
          "dns:",
          `  servers: ["${dns.address}"]`,
          "  timeout: 1s",
          "auth:",
          "  trusted_networks: []",
          "",
        ].join("\n"),
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await dns?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Sends `text` from bounce@relay.test; returns swaks' output. */
  async function send(text: string): Promise<string> {
    const path = join(dir, `m${files++}.eml`);
    await writeFile(path, text);
    const result = await swaks(server, [
      "--helo",
      "client.test",
      "--from",
      "bounce@relay.test",
      "--to",
      "alice@example.test",
      "--data",
      path,
    ]);
    return result.stdout;
  }

  it("refuses a single From of a p=reject domain (control)", async () => {
    const out = await send(message(["From: <ceo@rej.test>"], "Control"));
    assert.match(out, /<\*\* 550 5\.7\.1 Message rejected: DMARC policy of rej\.test says reject/);
  });

  for (
    const [name, fields] of [
      ["rej.test first", ["From: <ceo@rej.test>", "From: <x@relay.test>"]],
      ["rej.test second", ["From: <x@relay.test>", "From: <ceo@rej.test>"]],
    ] as const
  ) {
    it(`refuses two From fields (${name}) with 550 5.7.1, logged`, async () => {
      const subject = `Two From ${name}`;
      const out = await send(message([...fields], subject));
      assert.match(out, /<\*\* 550 5\.7\.1 Message rejected: several From fields/, out);
      assert.doesNotMatch(out, /queued as/);
      const line = await server.waitForLog(
        /event=rejected stage=data reason=dmarc_multiple_from .*reply="550 5\.7\.1 /,
      );
      assert.match(line, /from=<bounce@relay\.test>/);
    });
  }

  for (const order of ["<ceo@rej.test>, <x@relay.test>", "<x@relay.test>, <ceo@rej.test>"]) {
    it(`refuses one From with two domains (${order}): p=reject of rej.test applies`, async () => {
      const out = await send(message([`From: ${order}`], `Two authors ${order}`));
      assert.match(
        out,
        /<\*\* 550 5\.7\.1 Message rejected: DMARC policy of rej\.test says reject/,
        out,
      );
      await server.waitForLog(/event=rejected stage=data reason=dmarc_reject /);
    });
  }

  // RFC 5322 section 3.4.1: CFWS may stand around every part of an
  // addr-spec; mailauth's parser kept it inside angle brackets, found the
  // domain "(x)rej.test" or "rej", and the message was accepted (250).
  for (
    const [n, from] of [
      "<ceo@(x)rej.test>",
      "<ceo@rej (x).test>",
      "<ceo@rej.(a (nested\\) one))test>",
      "<ceo@\r\n rej.test>",
      "Board: <ceo (chief) @ rej.test>;",
    ].entries()
  ) {
    it(`refuses a From whose domain has comments or white space (${JSON.stringify(from)})`, async () => {
      const out = await send(message([`From: ${from}`], `Comments ${n}`));
      assert.match(
        out,
        /<\*\* 550 5\.7\.1 Message rejected: DMARC policy of rej\.test says reject/,
        out,
      );
      assert.doesNotMatch(out, /queued as/);
    });
  }

  // A From whose only "address" is an encoded word: a mail reader shows
  // ceo@rej.test, but there is no Author Domain for DMARC to evaluate; it
  // was accepted (250) with no DMARC verdict at all.
  for (
    const [n, from] of [
      "=?utf-8?b?Y2VvQHJlai50ZXN0?=",
      "=?utf-8?q?ceo=40rej=2Etest?=",
      "ceo at rej.test",
    ].entries()
  ) {
    it(`refuses a From with text but no author address (${JSON.stringify(from)})`, async () => {
      const out = await send(message([`From: ${from}`], `No author ${n}`));
      assert.match(
        out,
        /<\*\* 550 5\.7\.1 Message rejected: no valid author address in From/,
        out,
      );
      assert.doesNotMatch(out, /queued as/);
      await server.waitForLog(/event=rejected stage=data reason=dmarc_no_author /);
    });
  }

  it("defers (451 4.7.5) a correctly signed message whose DKIM key lookup fails", async () => {
    const text = message(["From: <ceo@flaky.test>"], "Signed, key lookup fails");
    const plain = join(dir, `m${files++}.eml`);
    await writeFile(plain, text);
    const signature = await dkimSign(plain, 0, flaky);
    const out = await send(signature + text);
    assert.match(out, /<\*\* 451 4\.7\.5 DMARC of flaky\.test could not be checked/, out);
    await server.waitForLog(
      /event=rejected stage=data reason=dmarc_temperror .*reply="451 4\.7\.5/,
    );
    // Once the key answers, the same message passes: a retry after the
    // resolver's failure cache (5 s) has let go (bounded: 40 tries, 30 s).
    dns.zone[flaky.record.name] = { TXT: [flaky.record.strings], ttl: 0 };
    let again = "";
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 40 && Date.now() < deadline; i++) {
      again = await send(signature + text);
      if (!/<\*\* 451 4\.7\.5 /.test(again)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.match(again, /<- {2}250 2\.0\.0 Ok: queued as \w+/, again);
    await server.waitForLog(/event=queued .*from=<bounce@relay\.test> .* dkim=pass dmarc=pass$/);
  });
});
