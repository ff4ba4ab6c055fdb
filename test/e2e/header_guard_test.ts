/**
 * The header section is checked as it streams in (src/smtp/header_guard.ts),
 * end to end: the real server, a loopback DNS server, a raw client and an
 * LMTP store that records what it receives.
 *
 * - A bare CR in the header section hid a field from the DMARC check and
 *   the RFC 8601 filter, and LMTP delivery (nodemailer turns the CR into
 *   CRLF) made it a field of its own: now 550 5.6.0 and nothing stored.
 * - A header section of many lines froze the whole server while mailauth
 *   parsed it: now 552 5.3.4 past 3,000 lines or 256 KiB.
 * - A bare CR in the body is delivered, and cannot end DATA or make a header
 *   field at the store.
 * - A message that went round a loop between two servers came back for
 *   ever: now 554 5.4.6 past 100 Received fields (RFC 5321 section 6.3).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import {
  type CapturedMessage,
  type LmtpCapture,
  startLmtpCapture,
} from "../support/lmtp_capture.ts";
import { LineClient } from "../support/smtp_lines.ts";
import { hashPassword } from "../../src/users/mod.ts";
import { cleanup, freePort, type Server, startServer } from "./harness.ts";

/** The header fields of a message as the store received it, unfolded. */
function fieldsOf(message: CapturedMessage): string[] {
  const head = message.wire.slice(0, message.wire.indexOf("\r\n\r\n"));
  return head.replace(/\r\n(?=[ \t])/g, "").split("\r\n");
}

describe("the header section at intake", () => {
  let dns: TestDnsServer;
  let store: LmtpCapture;
  let server: Server;
  let submission: number;

  before(async () => {
    submission = await freePort();
    dns = await startDnsServer({
      "probe.example": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
      "bank.test": { TXT: ["v=spf1 -all"] },
      "_dmarc.bank.test": { TXT: ["v=DMARC1; p=reject"] },
    });
    store = await startLmtpCapture();
    server = await startServer({
      config: {
        "postern.yaml": [
          "hostname: mx.postern.test",
          "dns:",
          `  servers: ["${dns.address}"]`,
          "  timeout: 2s",
          // Loopback is a stranger: its mail is checked (SPF, DKIM, DMARC).
          "auth:",
          "  trusted_networks: []",
          "submission:",
          `  listen: ["127.0.0.1:${submission}"]`,
          "domains:",
          `  other.test: { delivery: { lmtp: "${store.address}" } }`,
          "",
        ].join("\n"),
        "domains/other.test/users": "carol\n",
        "domains/example.test/users": `bob ${await hashPassword("pw-bob-1")}\n`,
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await store?.close();
    await dns?.close();
  });

  /** Opens a session and starts a transaction to carol@other.test; returns the client. */
  async function transaction(): Promise<LineClient> {
    const client = await LineClient.open(server.host, server.port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.match(await client.command("MAIL FROM:<boss@probe.example>"), /^250 /);
    assert.match(await client.command("RCPT TO:<carol@other.test>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    return client;
  }

  /** Sends `message` (bytes as latin1) and returns the reply to its final dot. */
  async function send(message: string): Promise<string> {
    const client = await transaction();
    client.write(Buffer.from(message, "latin1"));
    const reply = await client.command(".");
    client.close();
    return reply;
  }

  /** Waits until the store has the message with `subject` (bounded: a wait per arrival). */
  async function arrival(subject: string): Promise<CapturedMessage> {
    for (let count = 1; count <= store.messages.length + 10; count++) {
      const all = await store.waitForMessages(count);
      const found = all.find((m) => m.wire.includes(`\r\nSubject: ${subject}\r\n`));
      if (found) return found;
    }
    throw new Error(`no message "${subject}" among ${store.messages.length}`);
  }

  /** How many messages the mail log says were queued. */
  const queued = () => server.mailLog.filter((l) => / event=queued /.test(l)).length;

  /**
   * Sends a clean message and waits until the store has it; returns how
   * many messages were queued since `queuedBefore`, this one included (the
   * line of a message queued before it is logged by then).
   */
  async function fence(name: string, queuedBefore: number): Promise<number> {
    const reply = await send(`From: <boss@probe.example>\r\nSubject: ${name}\r\n\r\nfence\r\n`);
    assert.match(reply, /^250 2\.0\.0 Ok: queued as /);
    await arrival(name);
    return queued() - queuedBefore;
  }

  it("refuses a From hidden behind a bare CR with 550 5.6.0, and stores nothing", async () => {
    const hidden = "X-Note: hi\rFrom: <ceo@bank.test>\r\nFrom: <boss@probe.example>\r\n" +
      "Subject: wire transfer\r\n\r\nPlease pay.\r\n";
    const before = queued();
    assert.equal(await send(hidden), "550 5.6.0 Error: bare <CR> received in the message header");
    const line = await server.waitForLog(/event=rejected stage=data reason=bare_cr /);
    assert.match(line, / from=<boss@probe\.example> reply="550 5\.6\.0 /);
    assert.equal(await fence("after the hidden From", before), 1);
    assert.ok(!store.messages.some((m) => m.wire.includes("ceo@bank.test")));
  });

  it("refuses an Authentication-Results hidden behind a bare CR, and stores nothing", async () => {
    const hidden = "From: <boss@probe.example>\r\nSubject: invoice\rAuthentication-Results: " +
      "mx.postern.test; spf=pass; dkim=pass header.d=example.test; dmarc=pass\r\n\r\nPay now.\r\n";
    const before = queued();
    assert.equal(await send(hidden), "550 5.6.0 Error: bare <CR> received in the message header");
    assert.equal(await fence("after the hidden claim", before), 1);
    assert.ok(!store.messages.some((m) => m.wire.includes("dmarc=pass")));
  });

  it("delivers a bare CR of the body as it is: no header field, no end of DATA at the store", async () => {
    const body = "line one\r.\rRSET\r\nFrom: <evil@bank.test>\rQUIT\r\nlast line\r\n";
    const reply = await send("From: <boss@probe.example>\r\nSubject: old Mac\r\n\r\n" + body);
    assert.match(reply, /^250 2\.0\.0 Ok: queued as /);
    const message = await arrival("old Mac");
    // nodemailer turns each bare CR into CRLF, and stuffs the dot behind one.
    assert.ok(
      message.wire.endsWith(
        "\r\n\r\nline one\r\n..\r\nRSET\r\nFrom: <evil@bank.test>\r\nQUIT\r\nlast line\r\n",
      ),
      JSON.stringify(message.wire.slice(-120)),
    );
    const fields = fieldsOf(message);
    assert.deepEqual(fields.filter((f) => /^from:/i.test(f)), ["From: <boss@probe.example>"]);
  });

  it("refuses 80,000 folded header lines with 552 5.3.4 at once; the server goes on serving", async () => {
    const before = queued();
    const client = await transaction();
    const head = "X-Big: a\r\n" + " b\r\n".repeat(80_000) + "Subject: big\r\n\r\nbody\r\n";
    client.write(head);
    // Another client is served meanwhile: the event loop is not held.
    const bystander = await LineClient.open(server.host, server.port);
    assert.match((await bystander.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await bystander.command("QUIT"), /^221 /);
    bystander.close();
    assert.equal(
      await client.command("."),
      "552 5.3.4 Message header section exceeds the limit of 3000 lines",
    );
    // The session goes on, and the next message is taken.
    assert.match(await client.command("MAIL FROM:<boss@probe.example>"), /^250 /);
    client.close();
    const line = await server.waitForLog(/event=rejected stage=data reason=header_too_big /);
    assert.match(line, / from=<boss@probe\.example> /);
    assert.equal(await fence("after the big header", before), 1);
  });

  it("refuses it in submitted mail too, which mailauth would DKIM-sign", async () => {
    const client = await LineClient.open("127.0.0.1", submission);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.match(await client.command("STARTTLS"), /^220 /);
    await client.startTls();
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.match(
      await client.command(`AUTH PLAIN ${btoa("\0bob@example.test\0pw-bob-1")}`),
      /^235 /,
    );
    assert.match(await client.command("MAIL FROM:<bob@example.test>"), /^250 /);
    assert.match(await client.command("RCPT TO:<carol@other.test>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    client.write("X-Big: a\r\n" + " b\r\n".repeat(80_000) + "Subject: big\r\n\r\nbody\r\n");
    assert.equal(
      await client.command("."),
      "552 5.3.4 Message header section exceeds the limit of 3000 lines",
    );
    client.close();
  });

  it("refuses a header section over 256 KiB with 552 5.3.4", async () => {
    const long = Array.from({ length: 300 }, (_, i) => `X-Long-${i}: ${"y".repeat(990)}\r\n`);
    assert.equal(
      await send(long.join("") + "\r\nbody\r\n"),
      "552 5.3.4 Message header section exceeds the limit of 262144 bytes",
    );
  });

  it("refuses a message with 101 Received fields with 554 5.4.6, stores nothing, takes 100", async () => {
    const field = (i: number) => `Received: from h${i}.test by h${i + 1}.test; x\r\n`;
    const hundred = Array.from({ length: 100 }, (_, i) => field(i)).join("");
    const before = queued();
    assert.equal(
      await send(
        hundred + field(100) + "From: <boss@probe.example>\r\nSubject: looped\r\n\r\nx\r\n",
      ),
      "554 5.4.6 Too many hops: over 100 Received header fields, a mail loop",
    );
    const line = await server.waitForLog(/event=rejected stage=data reason=too_many_hops /);
    assert.match(line, / from=<boss@probe\.example> reply="554 5\.4\.6 /);
    assert.equal(await fence("after the loop", before), 1);
    assert.ok(!store.messages.some((m) => m.wire.includes("Subject: looped")));
    const far = hundred + "From: <boss@probe.example>\r\nSubject: far travelled\r\n\r\nx\r\n";
    assert.match(await send(far), /^250 2\.0\.0 Ok: queued as /);
    const message = await arrival("far travelled");
    // Ours on top: 101 as it leaves.
    assert.equal(fieldsOf(message).filter((f) => /^received:/i.test(f)).length, 101);
  });

  it("takes a header section of 3,000 lines, checked and delivered whole", async () => {
    // 1 + 2,997 folds + Subject + From = 3,000 lines.
    const head = "X-Big: a\r\n" + " b\r\n".repeat(2_997) +
      "Subject: at the limit\r\nFrom: <boss@probe.example>\r\n";
    assert.match(await send(head + "\r\nbody\r\n"), /^250 2\.0\.0 Ok: queued as /);
    const message = await arrival("at the limit");
    assert.ok(message.wire.endsWith(head + "\r\nbody\r\n"));
    assert.match(message.wire, /^Authentication-Results: mx\.postern\.test;/m);
  });
});
