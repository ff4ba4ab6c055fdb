/**
 * Raw command bytes: invalid UTF-8 is refused with 500 5.5.2, a non-ASCII
 * address without SMTPUTF8 with 553 5.6.7, a non-ASCII EHLO name with 501;
 * nothing is ever turned into U+FFFD. SMTPUTF8 mail keeps working.
 */

import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, eventually, maildirMessages, type Server, startServer } from "./harness.ts";
import { bytesWith, LineClient } from "../support/smtp_lines.ts";

describe("command bytes", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "hostname: mx.example.test\n",
        "domains/example.test/users": "alice\njörg\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  async function open(): Promise<LineClient> {
    const client = await LineClient.open(server.host, server.port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    return client;
  }

  it("refuses invalid UTF-8 in EHLO, MAIL FROM and RCPT TO with 500 5.5.2", async () => {
    const client = await open();
    assert.equal(
      await client.command(bytesWith("EHLO {}.example\r\n", [0xff, 0xfe])),
      "500 5.5.2 Error: bad UTF-8 syntax",
    );
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.equal(
      await client.command(bytesWith("MAIL FROM:<{}@client.test>\r\n", [0xff, 0xfe])),
      "500 5.5.2 Error: bad UTF-8 syntax",
    );
    // Even where SMTPUTF8 allows UTF-8, it must be UTF-8.
    assert.equal(
      await client.command(bytesWith("MAIL FROM:<{}@client.test> SMTPUTF8\r\n", [0xc3, 0x28])),
      "500 5.5.2 Error: bad UTF-8 syntax",
    );
    assert.match(await client.command("MAIL FROM:<sender@client.test> SMTPUTF8"), /^250 /);
    assert.equal(
      await client.command(bytesWith("RCPT TO:<{}@example.test>\r\n", [0xc3, 0x28])),
      "500 5.5.2 Error: bad UTF-8 syntax",
    );
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    await server.waitForLog(/event=rejected stage=command reason=bad_utf8 /);
  });

  it("refuses a non-ASCII address without SMTPUTF8 with 553 5.6.7", async () => {
    const client = await open();
    assert.match(await client.command("EHLO client.test"), /^250 /);
    const refusal = "553 5.6.7 Non-ASCII address without the SMTPUTF8 parameter on MAIL FROM";
    assert.equal(await client.command("MAIL FROM:<jörg@client.test>"), refusal);
    assert.match(await client.command("MAIL FROM:<sender@client.test>"), /^250 /);
    assert.equal(await client.command("RCPT TO:<jörg@example.test>"), refusal);
    assert.match(await client.command("RSET"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("refuses a non-ASCII EHLO name (A-labels there, RFC 5321 section 4.1.2) with 501", async () => {
    const client = await open();
    assert.match(await client.command("EHLO bücher.example"), /^501 /);
    assert.match(await client.command("EHLO xn--bcher-kva.example"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("delivers a UTF-8 envelope declared with SMTPUTF8, byte for byte", async () => {
    const client = await open();
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.match(await client.command("MAIL FROM:<jörg@client.test> SMTPUTF8"), /^250 /);
    assert.match(await client.command("RCPT TO:<jörg@example.test>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    const done = await client.command("Subject: grüße\r\n\r\nHallo.\r\n.");
    assert.match(done, /^250 2\.0\.0 Ok: queued as /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    const [stored] = await eventually(async () => {
      const messages = await maildirMessages(server.dataDir, "example.test", "jörg");
      return messages.length > 0 ? messages : undefined;
    });
    assert.match(stored!, /^Return-Path: <jörg@client\.test>/m);
  });

  it("never maps anything to U+FFFD, in the log or the mailboxes", async () => {
    // Its own invalid bytes, in every place: refused commands, and a
    // message whose header and body carry them (kept as they are).
    const badLines = () =>
      server.mailLog.filter((l) => /event=rejected stage=command reason=bad_utf8 /.test(l)).length;
    const before = badLines();
    const client = await open();
    const refused = "500 5.5.2 Error: bad UTF-8 syntax";
    assert.equal(
      await client.command(bytesWith("EHLO {}.example\r\n", [0xed, 0xa0, 0x80])),
      refused,
    );
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.equal(
      await client.command(bytesWith("MAIL FROM:<j{}rg@client.test> SMTPUTF8\r\n", [0xf6])),
      refused,
    );
    assert.match(await client.command("MAIL FROM:<jörg@client.test> SMTPUTF8"), /^250 /);
    assert.equal(
      await client.command(bytesWith("RCPT TO:<j{}rg@example.test>\r\n", [0xc3, 0x28])),
      refused,
    );
    assert.equal(
      await client.command(bytesWith("RCPT TO:<{}@example.test>\r\n", [0xff, 0xfe])),
      refused,
    );
    assert.match(await client.command("RCPT TO:<jörg@example.test>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    const done = await client.command(
      Buffer.concat([
        Buffer.from("Subject: raw "),
        Buffer.from([0xff, 0xfe]),
        Buffer.from("\r\n\r\nbody "),
        Buffer.from([0xc3, 0x28]),
        Buffer.from(" end\r\n.\r\n"),
      ]),
    );
    const qid = /^250 2\.0\.0 Ok: queued as (\w+)/.exec(done)?.[1];
    assert.ok(qid, done);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    // Everything it caused is in the log, and the message in the mailbox.
    await server.waitForLog(new RegExp(`qid=${qid} event=completed`));
    assert.ok(badLines() >= before + 4, `${badLines() - before} bad_utf8 lines`);
    const stored = await eventually(async () => {
      const dir = join(server.dataDir, "mail", "example.test", "jörg", "new");
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        const bytes = await readFile(join(dir, name));
        if (bytes.includes(Buffer.from("Subject: raw "))) return bytes;
      }
      return undefined;
    });
    assert.ok(stored.includes(Buffer.from([0xff, 0xfe])), "the header's raw bytes, as they came");
    assert.ok(stored.includes(Buffer.from([0xc3, 0x28])), "the body's raw bytes, as they came");
    assert.ok(!stored.includes(Buffer.from("\uFFFD")), "a U+FFFD in the stored message");

    assert.ok(!server.mailLog.some((l) => l.includes("\uFFFD")), server.mailLog.join("\n"));
    const mailboxes = await readdir(join(server.dataDir, "mail", "example.test"));
    assert.ok(mailboxes.includes("jörg"), mailboxes.join(" "));
    assert.ok(!mailboxes.some((m) => /%EF%BF%BD|\uFFFD/i.test(m)), mailboxes.join(" "));
  });
});
