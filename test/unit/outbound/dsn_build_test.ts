/**
 * `buildDsn()`: the delivery status notification of RFC 3464 (and RFC 6533
 * for UTF-8) that Postern sends for failed and delayed recipients: its
 * header, its three parts, the wording of the text part, the status fields
 * of each recipient, the original header it returns (never the body), and
 * what it does with long, hostile or odd input.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildDsn, type DsnRecipient } from "../../../src/outbound/dsn.ts";
import { chunksOf } from "../helpers.ts";
import {
  assertCrlfOnly,
  bounce,
  BOUNDARY,
  decoder,
  encoder,
  input,
  longestLine,
  ORIGINAL_BODY,
  ORIGINAL_HEADER,
  parse,
  type ParsedDsn,
  statusGroups,
  tracked,
} from "./dsn_fixtures.ts";

describe("buildDsn", () => {
  it("buildDsn() writes the top-level header fields of a bounce", async () => {
    const dsn = parse(await buildDsn(input()));
    assert.deepEqual(dsn.names, [
      "From",
      "To",
      "Subject",
      "Date",
      "Message-ID",
      "Auto-Submitted",
      "MIME-Version",
      "Content-Type",
    ]);
    assert.equal(dsn.headers.get("from"), "Mail Delivery System <MAILER-DAEMON@mx.ex.test>");
    assert.equal(dsn.headers.get("to"), "<alice@ex.test>");
    assert.equal(dsn.headers.get("subject"), "Undelivered Mail Returned to Sender");
    assert.equal(dsn.headers.get("date"), "Sun, 22 Nov 2026 05:33:00 +0000");
    assert.match(dsn.headers.get("message-id")!, /^<[0-9a-f]{32}@mx\.ex\.test>$/);
    assert.equal(dsn.headers.get("auto-submitted"), "auto-replied");
    assert.equal(dsn.headers.get("mime-version"), "1.0");
    assert.equal(
      dsn.headers.get("content-type"),
      `multipart/report; report-type=delivery-status; boundary="${BOUNDARY}"`,
    );
  });

  it("buildDsn() uses CRLF line endings throughout and ends with the close delimiter", async () => {
    const text = decoder.decode(await buildDsn(input()));
    assertCrlfOnly(text);
    assert.ok(text.endsWith(`\r\n--${BOUNDARY}--\r\n`));
    assert.ok(longestLine(text) <= 78, "a line is longer than 78 octets");
  });

  it("buildDsn() puts a text/plain, a delivery-status and a header part in that order", async () => {
    const { parts } = parse(await buildDsn(input()));
    assert.deepEqual(parts.map((p) => p.headers.get("content-type")), [
      "text/plain; charset=utf-8",
      "message/delivery-status",
      "text/rfc822-headers",
    ]);
    assert.equal(parts[0]!.headers.get("content-transfer-encoding"), "7bit");
    assert.equal(parts[1]!.headers.has("content-transfer-encoding"), false);
    assert.equal(parts[2]!.headers.has("content-transfer-encoding"), false);
  });

  it("buildDsn() explains the failure in the text part", async () => {
    const { parts } = parse(await buildDsn(input()));
    const text = parts[0]!.body.replace(/\r\n\s*/g, " ");
    assert.match(text, /mail system at mx\.ex\.test/);
    assert.match(text, /could not be delivered/);
    assert.match(text, /<bob@remote\.test> Status 5\.1\.1\./);
    assert.match(text, /The server mx\.remote\.test answered: 550 5\.1\.1 No such user/);
    assert.match(text, /Last attempt: Sun, 22 Nov 2026 05:30:00 \+0000/);
    assert.match(text, /Queue ID: 0123456789abcdef/);
    assert.match(text, /Arrived: +Fri, 20 Nov 2026 08:00:00 \+0000/);
    assert.doesNotMatch(text, /not been delivered yet|cut short/);
  });

  it("buildDsn() writes the per-message and per-recipient fields of RFC 3464", async () => {
    const { parts } = parse(await buildDsn(input()));
    assert.equal(
      parts[1]!.body,
      "Reporting-MTA: dns; mx.ex.test\r\n" +
        "Arrival-Date: Fri, 20 Nov 2026 08:00:00 +0000\r\n" +
        "\r\n" +
        "Final-Recipient: rfc822; bob@remote.test\r\n" +
        "Action: failed\r\n" +
        "Status: 5.1.1\r\n" +
        "Remote-MTA: dns; mx.remote.test\r\n" +
        "Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n" +
        "Last-Attempt-Date: Sun, 22 Nov 2026 05:30:00 +0000\r\n",
    );
  });

  it("buildDsn() returns the original header but never its body", async () => {
    const { parts, text } = parse(await buildDsn(input()));
    assert.equal(parts[2]!.body, ORIGINAL_HEADER);
    assert.doesNotMatch(text, /SECRET BODY|more body/);
  });

  it("buildDsn() stops reading the original after its header", async () => {
    const { state, stream } = tracked([ORIGINAL_HEADER, "\r\n", ORIGINAL_BODY, "never pulled"]);
    await buildDsn(input({ original: stream }));
    assert.equal(state.pulled, 2);
    assert.equal(state.closed, true);
  });

  it("buildDsn() reports every recipient in its own group, in order", async () => {
    const recipients: DsnRecipient[] = [
      bounce(),
      { address: "carol@remote.test", action: "failed", status: "5.2.2" },
      bounce({ address: "dave@other.test", status: "5.7.1", diagnostic: "550 5.7.1 Denied" }),
    ];
    const { parts } = parse(await buildDsn(input({ recipients })));
    const groups = statusGroups(parts[1]!);
    assert.equal(groups.length, 4);
    assert.deepEqual(groups.slice(1).map((g) => g.get("final-recipient")), [
      "rfc822; bob@remote.test",
      "rfc822; carol@remote.test",
      "rfc822; dave@other.test",
    ]);
    assert.deepEqual(groups.slice(1).map((g) => g.get("status")), ["5.1.1", "5.2.2", "5.7.1"]);
    // Optional fields appear only where given.
    assert.deepEqual([...groups[2]!.keys()], ["final-recipient", "action", "status"]);
    assert.equal(groups[3]!.get("diagnostic-code"), "smtp; 550 5.7.1 Denied");
    const text = parts[0]!.body;
    assert.ok(text.indexOf("<bob@") < text.indexOf("<carol@"));
    assert.ok(text.indexOf("<carol@") < text.indexOf("<dave@"));
  });

  it("buildDsn() writes a delay warning when no recipient failed", async () => {
    const recipients: DsnRecipient[] = [{
      address: "bob@remote.test",
      action: "delayed",
      status: "4.4.1",
      diagnostic: "connect to mx.remote.test: connection timed out",
      lastAttemptAt: new Date("2026-11-22T05:30:00.000Z"),
      willRetryUntil: new Date("2026-11-25T08:00:00.000Z"),
    }];
    const dsn = parse(await buildDsn(input({ recipients })));
    assert.equal(dsn.headers.get("subject"), "Delayed Mail (still being retried)");
    const group = statusGroups(dsn.parts[1]!)[1]!;
    assert.equal(group.get("action"), "delayed");
    assert.equal(group.get("status"), "4.4.1");
    assert.equal(group.get("will-retry-until"), "Wed, 25 Nov 2026 08:00:00 +0000");
    assert.equal(group.has("remote-mta"), false);
    // Not an SMTP reply: the diagnostic type says so (RFC 3464 section 2.3.6).
    assert.equal(
      group.get("diagnostic-code"),
      "X-Postern; connect to mx.remote.test: connection timed out",
    );
    const text = dsn.parts[0]!.body.replace(/\r\n\s*/g, " ");
    assert.match(text, /not been delivered yet/);
    assert.match(text, /no need to send the message again/);
    assert.match(text, /Retrying until: Wed, 25 Nov 2026 08:00:00 \+0000/);
    assert.match(text, /Reason: connect to mx\.remote\.test/);
    assert.doesNotMatch(text, /could not be delivered/);
  });

  it("buildDsn() leaves Will-Retry-Until out for a failed recipient", async () => {
    const recipients = [bounce({ willRetryUntil: new Date("2026-11-25T08:00:00.000Z") })];
    const { parts } = parse(await buildDsn(input({ recipients })));
    assert.equal(statusGroups(parts[1]!)[1]!.has("will-retry-until"), false);
    assert.doesNotMatch(parts[0]!.body, /Retrying until/);
  });

  it("buildDsn() calls a mix of failed and delayed recipients a bounce and explains both", async () => {
    const recipients: DsnRecipient[] = [
      { address: "late@remote.test", action: "delayed", status: "4.2.2" },
      bounce(),
    ];
    const dsn = parse(await buildDsn(input({ recipients })));
    assert.equal(dsn.headers.get("subject"), "Undelivered Mail Returned to Sender");
    const groups = statusGroups(dsn.parts[1]!);
    assert.deepEqual(groups.slice(1).map((g) => g.get("action")), ["delayed", "failed"]);
    const text = dsn.parts[0]!.body.replace(/\r\n\s*/g, " ");
    assert.match(text, /could not be delivered to the following recipients: <bob@remote\.test>/);
    assert.match(text, /following recipients\. The mail system is still trying.*<late@/);
  });

  it("buildDsn() says it gave up when a failed recipient has a temporary status", async () => {
    const recipients = [bounce({ status: "4.4.7", diagnostic: "451 4.4.1 Try later" })];
    const { parts } = parse(await buildDsn(input({ recipients })));
    assert.match(parts[0]!.body.replace(/\r\n\s*/g, " "), /gave up after repeated temporary/);
    assert.equal(statusGroups(parts[1]!)[1]!.get("status"), "4.4.7");
  });

  it("buildDsn() replaces a malformed status with the class default", async () => {
    const recipients: DsnRecipient[] = [
      bounce({ status: "550" }),
      { address: "x@remote.test", action: "delayed", status: "4.4" },
    ];
    const { parts } = parse(await buildDsn(input({ recipients })));
    const groups = statusGroups(parts[1]!);
    assert.equal(groups[1]!.get("status"), "5.0.0");
    assert.equal(groups[2]!.get("status"), "4.0.0");
  });

  it("buildDsn() folds a long diagnostic and keeps every line within 998 octets", async () => {
    const words = Array.from({ length: 60 }, (_, i) => `word${i}`).join(" ");
    const diagnostic = `550-5.7.1 ${words}\r\n550 5.7.1 ${"x".repeat(2000)}`;
    const bytes = await buildDsn(input({ recipients: [bounce({ diagnostic })] }));
    const text = decoder.decode(bytes);
    assertCrlfOnly(text);
    assert.ok(longestLine(text) <= 998);
    const { parts } = parse(bytes);
    const raw = parts[1]!.body;
    const start = raw.indexOf("Diagnostic-Code:");
    const folded = raw.slice(start, raw.indexOf("\r\nLast-Attempt-Date:"));
    assert.ok(folded.includes("\r\n "), "not folded");
    for (const line of folded.split("\r\n").slice(0, -1)) {
      assert.ok(line.length <= 78, `line of ${line.length} octets before a fold`);
    }
    const value = statusGroups(parts[1]!)[1]!.get("diagnostic-code")!;
    // The reply's lines are joined with spaces and the whole is capped.
    assert.ok(value.startsWith(`smtp; 550-5.7.1 ${words} 550 5.7.1 xxx`));
    assert.ok(value.endsWith("..."));
    assert.ok(encoder.encode(value).byteLength <= 1024 + "smtp; ".length);
  });

  it("buildDsn() cuts a single word too long for one line", async () => {
    const diagnostic = `550 ${"y".repeat(990)}`;
    const text = decoder.decode(await buildDsn(input({ recipients: [bounce({ diagnostic })] })));
    assert.ok(longestLine(text) <= 998);
    assert.doesNotMatch(text, /y{901}/);
    assert.match(text, /y{900}/);
  });

  it("buildDsn() keeps CR and LF in a diagnostic from starting new header fields", async () => {
    const diagnostic = "550 no\r\nX-Injected: yes\nAction: delivered\r\n\r\nStatus: 2.0.0";
    const bytes = await buildDsn(input({ recipients: [bounce({ diagnostic })] }));
    const { parts } = parse(bytes);
    const groups = statusGroups(parts[1]!);
    assert.equal(groups.length, 2);
    assert.equal(groups[1]!.get("action"), "failed");
    assert.equal(groups[1]!.get("status"), "5.1.1");
    assert.equal(groups[1]!.has("x-injected"), false);
  });

  it("buildDsn() removes control characters from addresses and host names", async () => {
    const dsn = parse(
      await buildDsn(input({
        originalSender: "alice@ex.test\r\nBcc: evil@x.test",
        recipients: [
          bounce({ address: "bob@remote.test\r\nX: y", remoteMta: "mx\r\n.remote.test" }),
        ],
      })),
    );
    assert.equal(dsn.headers.has("bcc"), false);
    assert.equal(dsn.headers.get("to"), "<alice@ex.testBcc: evil@x.test>");
    const group = statusGroups(dsn.parts[1]!)[1]!;
    assert.equal(group.get("final-recipient"), "rfc822; bob@remote.testX: y");
    assert.equal(group.get("remote-mta"), "dns; mx.remote.test");
    assert.equal(group.has("x"), false);
  });

  it("buildDsn() keeps UTF-8 addresses and switches to the global types of RFC 6533", async () => {
    const recipients = [
      bounce({ address: "jörg@bücher.test", diagnostic: "550 5.1.1 Unbekannt: jörg" }),
    ];
    const bytes = await buildDsn(input({ originalSender: "zoë@ex.test", recipients }));
    const dsn = parse(bytes);
    assertCrlfOnly(dsn.text);
    assert.equal(
      dsn.headers.get("content-type"),
      `multipart/report; report-type=global-delivery-status; boundary="${BOUNDARY}"`,
    );
    assert.equal(dsn.headers.get("content-transfer-encoding"), "8bit");
    assert.equal(dsn.headers.get("to"), "<zoë@ex.test>");
    assert.deepEqual(dsn.parts.map((p) => p.headers.get("content-type")), [
      "text/plain; charset=utf-8",
      "message/global-delivery-status",
      "message/global-headers",
    ]);
    assert.deepEqual(
      dsn.parts.map((p) => p.headers.get("content-transfer-encoding")),
      ["8bit", "8bit", "8bit"],
    );
    const group = statusGroups(dsn.parts[1]!)[1]!;
    assert.equal(group.get("final-recipient"), "utf-8; jörg@bücher.test");
    assert.equal(group.get("diagnostic-code"), "smtp; 550 5.1.1 Unbekannt: jörg");
    assert.match(dsn.parts[0]!.body, /<jörg@bücher\.test>/);
    // The bytes are UTF-8 as is, not encoded words or escapes.
    assert.ok(bytes.length > dsn.text.length);
  });

  it("buildDsn() keeps an ASCII address as rfc822 beside a UTF-8 one", async () => {
    const recipients = [bounce(), bounce({ address: "jörg@bücher.test" })];
    const { parts } = parse(await buildDsn(input({ recipients })));
    const groups = statusGroups(parts[1]!);
    assert.equal(groups[1]!.get("final-recipient"), "rfc822; bob@remote.test");
    assert.equal(groups[2]!.get("final-recipient"), "utf-8; jörg@bücher.test");
  });

  it("buildDsn() returns a UTF-8 original header as message/global-headers", async () => {
    const original = chunksOf("Subject: Grüße\r\n\r\nbody\r\n");
    const { parts } = parse(await buildDsn(input({ original })));
    assert.equal(parts[1]!.headers.get("content-type"), "message/global-delivery-status");
    assert.equal(parts[2]!.headers.get("content-type"), "message/global-headers");
    assert.equal(parts[2]!.body, "Subject: Grüße\r\n");
  });

  it("buildDsn() cuts an original header over 64 KiB at a line ending and says so", async () => {
    const line = `X-Filler: ${"f".repeat(88)}\r\n`; // 100 bytes
    const header = line.repeat(700); // 70,000 bytes
    const { state, stream } = tracked([header, "\r\n", "body\r\n"]);
    const { parts } = parse(await buildDsn(input({ original: stream })));
    assert.equal(parts[2]!.body, line.repeat(655));
    assert.ok(parts[2]!.body.length <= 64 * 1024);
    assert.equal(state.pulled, 1);
    assert.equal(state.closed, true);
    assert.match(parts[0]!.body.replace(/\r\n\s*/g, " "), /cut short/);
  });

  it("buildDsn() turns an LF-only original header into CRLF lines", async () => {
    const original = chunksOf("From: a@ex.test\nSubject: lf\n\nbody\n");
    const bytes = await buildDsn(input({ original }));
    const { parts, text } = parse(bytes);
    assertCrlfOnly(text);
    assert.equal(parts[2]!.body, "From: a@ex.test\r\nSubject: lf\r\n");
  });

  it("buildDsn() handles an original that is all header, without a last line ending", async () => {
    const { parts, text } = parse(await buildDsn(input({ original: chunksOf("Subject: x") })));
    assertCrlfOnly(text);
    assert.equal(parts[2]!.body, "Subject: x\r\n");
  });

  it("buildDsn() handles an empty original and one without a header", async () => {
    for (const original of [chunksOf(), chunksOf("\r\nbody only\r\n")]) {
      const { parts, text } = parse(await buildDsn(input({ original })));
      assert.equal(parts[2]!.body, "");
      assert.doesNotMatch(text, /body only/);
    }
  });

  it("buildDsn() picks a fresh random boundary and Message-ID when none is given", async () => {
    const { boundary: _boundary, now: _now, ...defaults } = input();
    const make = async () =>
      parse(await buildDsn({ ...defaults, original: chunksOf(ORIGINAL_HEADER) }));
    const first = await make();
    const second = await make();
    const boundaryOf = (d: ParsedDsn) =>
      /boundary="([^"]+)"/.exec(d.headers.get("content-type")!)![1]!;
    assert.match(boundaryOf(first), /^[0-9A-Za-z'()+_,\-./:=?]{1,70}$/);
    assert.notEqual(boundaryOf(first), boundaryOf(second));
    assert.notEqual(first.headers.get("message-id"), second.headers.get("message-id"));
    // Without `now`, the Date is the current time.
    const date = Date.parse(first.headers.get("date")!);
    assert.ok(Math.abs(date - Date.now()) < 60_000);
  });

  it("buildDsn() refuses a given boundary that occurs in the content", async () => {
    const original = chunksOf(`Subject: x\r\n--${BOUNDARY}\r\n\r\n`);
    await assert.rejects(buildDsn(input({ original })), RangeError);
  });

  it("buildDsn() refuses a malformed boundary, no recipients and the null sender", async () => {
    await assert.rejects(buildDsn(input({ boundary: "has space" })), RangeError);
    await assert.rejects(buildDsn(input({ boundary: "x".repeat(71) })), RangeError);
    await assert.rejects(buildDsn(input({ boundary: "" })), RangeError);
    await assert.rejects(buildDsn(input({ recipients: [] })), /without recipients/);
    await assert.rejects(buildDsn(input({ originalSender: "" })), /null sender/);
  });
});
