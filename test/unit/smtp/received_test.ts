import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { receivedHeader, rfc5322Date } from "../../../src/smtp/mod.ts";
import type { ReceivedInfo } from "../../../src/smtp/received.ts";

const DATE = new Date("2026-11-22T05:33:00.000Z");

function info(overrides: Partial<ReceivedInfo> = {}): ReceivedInfo {
  return {
    helo: "client.test",
    clientIp: "192.0.2.7",
    hostname: "mx.ex.test",
    queueId: "0123456789abcdef",
    tls: false,
    smtputf8: false,
    esmtp: true,
    recipients: ["alice@ex.test"],
    date: DATE,
    ...overrides,
  };
}

describe("receivedHeader", () => {
  it("receivedHeader() builds the folded header with CRLF endings", () => {
    assert.equal(
      receivedHeader(info()),
      "Received: from client.test ([192.0.2.7])\r\n" +
        "\tby mx.ex.test (Postern) with ESMTP id 0123456789abcdef\r\n" +
        "\tfor <alice@ex.test>; Sun, 22 Nov 2026 05:33:00 +0000\r\n",
    );
  });

  it("receivedHeader() ends every line in CRLF and has no bare LF or CR", () => {
    const header = receivedHeader(info({ recipients: ["a@x", "b@x"] }));
    assert.ok(header.endsWith("\r\n"));
    assert.equal(header.replace(/\r\n/g, "").includes("\n"), false);
    assert.equal(header.replace(/\r\n/g, "").includes("\r"), false);
    assert.equal(header.split("\r\n").length, 4);
  });

  it("receivedHeader() names the protocol from esmtp, tls and smtputf8", () => {
    const protocol = (o: Partial<ReceivedInfo>) =>
      / with (\S+) id /.exec(receivedHeader(info(o)))![1];
    assert.equal(protocol({ esmtp: false }), "SMTP");
    assert.equal(protocol({ esmtp: true }), "ESMTP");
    assert.equal(protocol({ esmtp: true, tls: true }), "ESMTPS");
    assert.equal(protocol({ esmtp: true, smtputf8: true }), "UTF8SMTP");
    assert.equal(protocol({ esmtp: true, smtputf8: true, tls: true }), "UTF8SMTPS");
  });

  it("receivedHeader() adds A for an authenticated client (RFC 3848, RFC 6531)", () => {
    const protocol = (o: Partial<ReceivedInfo>) =>
      / with (\S+) id /.exec(receivedHeader(info(o)))![1];
    assert.equal(protocol({ esmtp: true, tls: true, authenticated: true }), "ESMTPSA");
    assert.equal(protocol({ esmtp: true, authenticated: true }), "ESMTPA");
    assert.equal(
      protocol({ esmtp: true, smtputf8: true, tls: true, authenticated: true }),
      "UTF8SMTPSA",
    );
    assert.equal(protocol({ esmtp: true, tls: true, authenticated: false }), "ESMTPS");
  });

  it("receivedHeader() names the recipient only when there is exactly one", () => {
    assert.match(receivedHeader(info()), /\tfor <alice@ex\.test>; /);
    const many = receivedHeader(info({ recipients: ["alice@ex.test", "bob@ex.test"] }));
    assert.doesNotMatch(many, /alice|bob|for </);
    assert.match(many, /\r\n\t; Sun, 22 Nov 2026 05:33:00 \+0000\r\n$/);
    const none = receivedHeader(info({ recipients: [] }));
    assert.doesNotMatch(none, /for </);
  });

  it("receivedHeader() removes parentheses, newlines and spaces from the HELO name", () => {
    const header = receivedHeader(info({ helo: "evil) (x\r\nX-Injected: yes<>;\\" }));
    const first = header.split("\r\n")[0]!;
    assert.equal(first, "Received: from evilxX-Injected:yes ([192.0.2.7])");
    assert.equal(header.split("\r\n").length, 4);
    assert.doesNotMatch(header, /X-Injected: yes/);
  });

  it("receivedHeader() writes unknown when the HELO name is empty after cleaning", () => {
    assert.match(receivedHeader(info({ helo: "" })), /^Received: from unknown \(/);
    assert.match(receivedHeader(info({ helo: " ()\r\n" })), /^Received: from unknown \(/);
  });

  it("receivedHeader() keeps UTF-8 in the HELO name and recipient", () => {
    const header = receivedHeader(info({ helo: "bücher.de", recipients: ["jörg@bücher.de"] }));
    assert.match(header, /^Received: from bücher\.de /);
    assert.match(header, /for <jörg@bücher\.de>;/);
  });

  it("receivedHeader() removes angle brackets and newlines from the single recipient", () => {
    const header = receivedHeader(info({ recipients: ["a>\r\nX: y@ex.test"] }));
    assert.match(header, /\tfor <aX:y@ex\.test>; /);
    assert.equal(header.split("\r\n").length, 4);
  });
});

describe("rfc5322Date", () => {
  it("rfc5322Date() formats a UTC date with day, month and +0000", () => {
    assert.equal(rfc5322Date(DATE), "Sun, 22 Nov 2026 05:33:00 +0000");
  });

  it("rfc5322Date() pads the time but not the day of month", () => {
    assert.equal(
      rfc5322Date(new Date("2026-01-05T01:02:03.999Z")),
      "Mon, 5 Jan 2026 01:02:03 +0000",
    );
  });

  it("rfc5322Date() uses UTC whatever the local offset of the input", () => {
    assert.equal(
      rfc5322Date(new Date("2025-12-31T23:59:59-05:00")),
      "Thu, 1 Jan 2026 04:59:59 +0000",
    );
  });
});
