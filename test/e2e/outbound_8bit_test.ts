/**
 * 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531) on the way out, end to end:
 * messages submitted with BODY=8BITMIME or SMTPUTF8 go to a scripted MX
 * that offers both extensions and to one that offers neither.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { dialogue, FakeMx, type FakeMxMessage } from "../support/fake_mx.ts";
import { LineClient } from "../support/smtp_lines.ts";
import { hashPassword } from "../../src/users/mod.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  outboundBaseYaml,
  type Server,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";

const EIGHT_BIT_BODY = "Subject: eight bit\r\nContent-Type: text/plain; charset=utf-8\r\n" +
  "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n";
const UTF8_HEADER = "Subject: Grüße\r\nFrom: Jürgen <alice@example.test>\r\n\r\nhi\r\n";

/** `text` as the fake server shows what it read: its UTF-8 bytes, one character each. */
const bytes = (text: string) => Buffer.from(text, "utf8").toString("latin1");

describe("outbound delivery of 8-bit and UTF-8 mail", () => {
  let dns: TestDnsServer;
  let server: Server;
  let full: FakeMx;
  let bare: FakeMx;
  let submission: number;

  /** Submits `body` to `to` with `parameters` on MAIL FROM, as alice; the queue ID. */
  async function inject(to: string, parameters: string, body: string): Promise<string> {
    const client = await LineClient.open("127.0.0.1", submission);
    try {
      await client.waitFor(/^220 /);
      assert.match(await client.command("EHLO client.test"), /^250 /);
      assert.match(await client.command("STARTTLS"), /^220 /);
      await client.startTls();
      assert.match(await client.command("EHLO client.test"), /^250 /);
      const login = Buffer.from("\0alice@example.test\0pw-alice-1").toString("base64");
      assert.match(await client.command(`AUTH PLAIN ${login}`), /^235 /);
      assert.match(await client.command(`MAIL FROM:<alice@example.test> ${parameters}`), /^250 /);
      assert.match(await client.command(`RCPT TO:<${to}>`), /^250 /);
      assert.match(await client.command("DATA"), /^354 /);
      const reply = await client.command(new TextEncoder().encode(`${body}.\r\n`));
      const id = /queued as (\w+)/.exec(reply)?.[1];
      assert.ok(id, reply);
      return id;
    } finally {
      client.close();
    }
  }
  /** The message `fake` took whose data holds `text`. */
  const taken = (fake: FakeMx, text: string) =>
    eventually(
      () =>
        Promise.resolve(
          fake.connections.flatMap((c) => c.messages).find((m: FakeMxMessage) =>
            m.data.includes(text)
          ),
        ),
      20_000,
      `a message holding ${JSON.stringify(text)}: ${fake.transcript}`,
    );

  before(async () => {
    const port = await freePort();
    full = await FakeMx.start(
      "127.0.0.141",
      port,
      dialogue({ ehlo: "250-full\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING" }),
    );
    bare = await FakeMx.start(
      "127.0.0.142",
      port,
      dialogue({ ehlo: "250-bare\r\n250 PIPELINING" }),
    );
    dns = await startDnsServer({
      "full.test": { MX: [{ priority: 10, exchange: "mx.full.test" }] },
      "mx.full.test": { A: ["127.0.0.141"] },
      "bare.test": { MX: [{ priority: 10, exchange: "mx.bare.test" }] },
      "mx.bare.test": { A: ["127.0.0.142"] },
    });
    submission = await freePort();
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        ...outboundBaseYaml(submission, dns.address),
        "outbound:",
        `  port: ${port}`,
        "  mta_sts: false",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await full?.close();
    await bare?.close();
    await dns?.close();
  });

  it("declares BODY=8BITMIME for an 8-bit message to a server that offers 8BITMIME (RFC 6152 section 3)", async () => {
    const id = await inject("r@full.test", "BODY=8BITMIME", EIGHT_BIT_BODY);
    const got = await taken(full, bytes("Grüße aus Köln"));
    assert.match(got.mailFrom, /^MAIL FROM:<alice@example\.test> BODY=8BITMIME$/);
    await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=sent`));
  });

  it("sends an 8-bit part as quoted-printable to a server without 8BITMIME, as Postfix does", async () => {
    const id = await inject("r@bare.test", "BODY=8BITMIME", EIGHT_BIT_BODY);
    const got = await taken(bare, "Gr=C3=BC=C3=9Fe aus K=C3=B6ln");
    assert.equal(got.mailFrom, "MAIL FROM:<alice@example.test>");
    assert.match(got.data, /^Content-Transfer-Encoding: quoted-printable\r$/m);
    assert.doesNotMatch(got.data, /[^\p{ASCII}]/u, "nothing but 7-bit bytes");
    await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=sent`));
  });

  it("declares SMTPUTF8 for UTF-8 header fields the sender declared (RFC 6531 section 3.4)", async () => {
    const id = await inject("r@full.test", "SMTPUTF8 BODY=8BITMIME", UTF8_HEADER);
    const got = await taken(full, bytes("Subject: Grüße"));
    assert.match(got.mailFrom, /^MAIL FROM:<alice@example\.test> (?=.*\bSMTPUTF8\b).*$/);
    assert.match(got.mailFrom, /\bBODY=8BITMIME\b/);
    await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=sent`));
  });

  it("bounces with 5.6.7 a message that needs SMTPUTF8 when the server does not offer it", async () => {
    const before = bare.connections.flatMap((c) => c.messages).length;
    const id = await inject("r@bare.test", "SMTPUTF8 BODY=8BITMIME", UTF8_HEADER);
    const line = await server.waitForLog(new RegExp(`qid=${id} event=delivery `), 20_000);
    assert.match(line, /result=failed/);
    assert.match(line, /SMTPUTF8 is required, but was not offered by host mx\.bare\.test/);
    const report = await eventually(
      async () =>
        (await maildirMessages(server.dataDir, "example.test", "alice")).find((m) =>
          m.includes(`${id}`) && m.includes("Action: failed")
        ),
      20_000,
      "the bounce",
    );
    assert.match(report, /Status: 5\.6\.7/);
    assert.equal(bare.connections.flatMap((c) => c.messages).length, before, "nothing sent");
    assert.ok(
      !bare.connections.some((c) => c.log.some((l) => /[^\p{ASCII}]/u.test(l))),
      "no UTF-8 went to the server",
    );
  });
});
