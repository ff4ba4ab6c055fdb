/**
 * Tests of the 8-bit to 7-bit conversion for servers without 8BITMIME
 * (RFC 6152 section 3; RFC 2045 section 6.7), and of the scan that tells
 * what a message needs (8BITMIME, SMTPUTF8).
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { downgradeTo7bit } from "../../../src/outbound/downgrade.ts";
import { needsSmtputf8, scanMessage, sendPlan } from "../../../src/outbound/eight_bit.ts";

const utf8 = new TextEncoder();

/** `text` (UTF-8) in chunks of `size` bytes. */
async function* chunks(text: string, size = 7): AsyncGenerator<Uint8Array> {
  const bytes = utf8.encode(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** The converted message, as bytes. */
async function convert(text: string, size?: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of downgradeTo7bit(chunks(text, size))) parts.push(part.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Quoted-printable decoding (RFC 2045 section 6.7), to check the round trip. */
function decodeQp(encoded: string): string {
  const bytes: number[] = [];
  const body = encoded.replace(/=\r\n/g, "");
  for (let i = 0; i < body.length; i++) {
    if (body[i] === "=") {
      bytes.push(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(body.charCodeAt(i));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

describe("downgradeTo7bit", () => {
  it("downgradeTo7bit() leaves a 7-bit message as it is, byte for byte", async () => {
    const message = "From: a@example.test\r\nContent-Transfer-Encoding: 7bit\r\n\r\nplain\r\n" +
      "=not encoded\r\nno newline at the end";
    assert.equal(text(await convert(message)), message);
  });

  it("downgradeTo7bit() re-encodes an 8bit body as quoted-printable and says so", async () => {
    const body = "Grüße aus Köln = 100 %\r\nline with a trailing space \r\n" +
      "x".repeat(100) + "é\r\n";
    const message = "Subject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\n" +
      "Content-Transfer-Encoding: 8bit\r\n\r\n" + body;
    const out = await convert(message);
    const [header, encoded] = text(out).split("\r\n\r\n", 2) as [string, string];
    // The header is sent as it is: 8-bit header text has nothing to convert to.
    assert.equal(
      header,
      "Subject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\n" +
        "Content-Transfer-Encoding: quoted-printable",
    );
    assert.ok(utf8.encode(encoded).every((b) => b < 0x80), "the body is 7-bit");
    assert.match(encoded, /^Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100 %\r\n/);
    assert.match(encoded, /a trailing space=20\r\n/);
    for (const line of encoded.split("\r\n")) assert.ok(line.length <= 76, line);
    assert.equal(decodeQp(encoded), body);
  });

  it("downgradeTo7bit() converts the 8bit parts of a multipart and declares an 8bit container 7bit", async () => {
    const message = [
      "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="outer b"',
      "Content-Transfer-Encoding: 8bit",
      "",
      "preamble",
      "--outer b",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding:",
      " 8bit",
      "",
      "süß",
      "--outer b",
      "Content-Type: application/octet-stream",
      "Content-Transfer-Encoding: base64",
      "",
      "AAEC",
      "--outer b",
      "Content-Type: message/rfc822",
      "Content-Transfer-Encoding: 8bit",
      "",
      "Subject: inner",
      "Content-Transfer-Encoding: 8bit",
      "",
      "ünïcode",
      "--outer b--",
      "epilogue",
      "",
    ].join("\r\n");
    const out = text(await convert(message, 3));
    assert.equal(
      out,
      [
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer b"',
        "Content-Transfer-Encoding: 7bit",
        "",
        "preamble",
        "--outer b",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "s=C3=BC=C3=9F",
        "--outer b",
        "Content-Type: application/octet-stream",
        "Content-Transfer-Encoding: base64",
        "",
        "AAEC",
        "--outer b",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: 7bit",
        "",
        "Subject: inner",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "=C3=BCn=C3=AFcode",
        "--outer b--",
        "epilogue",
        "",
      ].join("\r\n"),
    );
  });

  it("downgradeTo7bit() gives the same bytes however the message is cut into chunks", async () => {
    const message = "Content-Type: multipart/alternative; boundary=zz\r\n\r\n--zz\r\n" +
      "Content-Transfer-Encoding: 8bit\r\n\r\n" + "ä".repeat(300) + "\r\n--zz--\r\n";
    const whole = await convert(message, 1 << 20);
    assert.deepEqual(await convert(message, 1), whole);
    assert.deepEqual(await convert(message, 13), whole);
    assert.ok(whole.every((b) => b < 0x80));
  });

  it("downgradeTo7bit() keeps a line longer than it holds at once valid, with soft breaks", async () => {
    const long = "ö".repeat(100_000);
    const out = text(
      await convert(`Content-Transfer-Encoding: 8bit\r\n\r\n${long}\r\nend\r\n`, 4096),
    );
    const body = out.split("\r\n\r\n", 2)[1]!;
    for (const line of body.split("\r\n")) assert.ok(line.length <= 76);
    assert.equal(decodeQp(body), `${long}\r\nend\r\n`);
  });
});

describe("scanMessage", () => {
  it("scanMessage() finds 8-bit bytes in the header, in the body, or nowhere", async () => {
    assert.deepEqual(await scanMessage(chunks("Subject: hi\r\n\r\nascii\r\n")), {
      eightBit: false,
      eightBitHeader: false,
    });
    assert.deepEqual(await scanMessage(chunks("Subject: hi\r\n\r\nGrüße\r\n", 2)), {
      eightBit: true,
      eightBitHeader: false,
    });
    assert.deepEqual(await scanMessage(chunks("Subject: Grüße\r\n\r\nascii\r\n", 1)), {
      eightBit: true,
      eightBitHeader: true,
    });
    // A folded line is still the header; an empty line (LF only) ends it.
    assert.deepEqual(await scanMessage(chunks("Subject: a\n b\n\nü\n")), {
      eightBit: true,
      eightBitHeader: false,
    });
  });

  it("needsSmtputf8() asks for SMTPUTF8 for a UTF-8 address, or a UTF-8 header the sender declared", () => {
    const header = { eightBit: true, eightBitHeader: true };
    const body = { eightBit: true, eightBitHeader: false };
    assert.equal(needsSmtputf8(false, ["jürgen@example.test", "b@x.test"], body), true);
    assert.equal(needsSmtputf8(true, ["a@example.test"], header), true);
    // Declared but ASCII after all (Postfix sends it without), and legacy
    // 8-bit header text without the declaration.
    assert.equal(needsSmtputf8(true, ["a@example.test"], body), false);
    assert.equal(needsSmtputf8(false, ["a@example.test"], header), false);
  });

  it("sendPlan() declares what the server offers, converts for one without 8BITMIME, refuses without SMTPUTF8", () => {
    const offering = (...keywords: string[]) => ({
      supports: (keyword: string) => keywords.includes(keyword),
    });
    const body = { eightBit: true, eightBitHeader: false };
    const ascii = { eightBit: false, eightBitHeader: false };
    const both = offering("8BITMIME", "SMTPUTF8");
    assert.deepEqual(sendPlan(body, false, ["a@x.test"], both), {
      smtputf8: false,
      eightBitMime: true,
      downgrade: false,
    });
    assert.deepEqual(sendPlan(body, false, ["a@x.test"], offering()), {
      smtputf8: false,
      eightBitMime: false,
      downgrade: true,
    });
    assert.deepEqual(sendPlan(ascii, true, ["a@x.test"], offering()), {
      smtputf8: false,
      eightBitMime: false,
      downgrade: false,
    });
    assert.deepEqual(sendPlan(ascii, false, ["ü@x.test"], both), {
      smtputf8: true,
      eightBitMime: false,
      downgrade: false,
    });
    assert.deepEqual(sendPlan(ascii, false, ["ü@x.test"], offering("8BITMIME")), {
      cannot: "SMTPUTF8",
    });
  });
});
