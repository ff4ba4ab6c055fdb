import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkCommand, checkCredentials } from "../../../src/smtp/command_check.ts";

const bytes = (...parts: Array<string | number[]>) => {
  const out: number[] = [];
  for (const part of parts) {
    out.push(...(typeof part === "string" ? new TextEncoder().encode(part) : part));
  }
  return new Uint8Array(out);
};
const open = { transactionOpen: true, smtputf8: false };
const idle = { transactionOpen: false, smtputf8: false };

describe("checkCommand", () => {
  it("checkCommand() passes ASCII commands through", () => {
    assert.equal(checkCommand(bytes("MAIL FROM:<a@b.example>"), idle), undefined);
    assert.equal(checkCommand(bytes("RCPT TO:<a@b.example>"), open), undefined);
  });

  it("checkCommand() refuses invalid UTF-8 anywhere with 500 5.5.2", () => {
    for (
      const line of [
        bytes("EHLO ", [0xff, 0xfe], ".example"),
        bytes("MAIL FROM:<", [0xff, 0xfe], "@x.example> SMTPUTF8"),
        bytes("RCPT TO:<", [0xc3, 0x28], "@localhost>"),
        bytes("NOOP ", [0xe2, 0x82]),
        bytes("RCPT TO:<", [0xed, 0xa0, 0x80], "@localhost>"), // a UTF-16 surrogate
        bytes("RCPT TO:<", [0xc0, 0xaf], "@localhost>"), // an overlong "/"
      ]
    ) {
      const refusal = checkCommand(line, { transactionOpen: true, smtputf8: true });
      assert.equal(refusal?.reason, "bad_utf8");
      assert.deepEqual(refusal?.reply, {
        code: 500,
        enhanced: "5.5.2",
        text: "Error: bad UTF-8 syntax",
      });
    }
  });

  it("checkCommand() refuses a non-ASCII EHLO or HELO name with 501, without an enhanced code", () => {
    for (const verb of ["EHLO", "helo"]) {
      const refusal = checkCommand(bytes(`${verb} bücher.example`), idle);
      assert.equal(refusal?.reason, "non_ascii_helo");
      assert.equal(refusal?.reply.code, 501);
      assert.equal(refusal?.enhanced, false);
    }
  });

  it("checkCommand() refuses a non-ASCII MAIL FROM address without SMTPUTF8 with 553 5.6.7", () => {
    const refusal = checkCommand(bytes("MAIL FROM:<jörg@x.example>"), idle);
    assert.equal(refusal?.reply.code, 553);
    assert.equal(refusal?.reply.enhanced, "5.6.7");
    assert.equal(checkCommand(bytes("MAIL FROM:<jörg@x.example> SMTPUTF8"), idle), undefined);
    assert.equal(
      checkCommand(bytes("mail from:<jörg@x.example> BODY=8BITMIME smtputf8"), idle),
      undefined,
    );
  });

  it("checkCommand() judges a non-ASCII RCPT TO by the transaction's SMTPUTF8", () => {
    assert.equal(checkCommand(bytes("RCPT TO:<jörg@x.example>"), open)?.reply.code, 553);
    assert.equal(
      checkCommand(bytes("RCPT TO:<jörg@x.example>"), { transactionOpen: true, smtputf8: true }),
      undefined,
    );
    // Before MAIL, smtp-server answers 503.
    assert.equal(checkCommand(bytes("RCPT TO:<jörg@x.example>"), idle), undefined);
  });

  it("checkCommand() leaves valid UTF-8 outside addresses and EHLO to smtp-server", () => {
    assert.equal(checkCommand(bytes("NOOP grüße"), idle), undefined);
    assert.equal(checkCommand(bytes("MAIL FROM:<a@x.example> ENVID=grüße"), idle), undefined);
  });

  it("checkCredentials() refuses base64 of invalid UTF-8, initial or answering a 334", () => {
    const b64 = (...b: number[]) => btoa(String.fromCharCode(...b));
    const invalid = b64(0, 0x61, 0, 0xff, 0xfe);
    assert.equal(checkCredentials(bytes(`AUTH PLAIN ${invalid}`), false)?.reply.code, 501);
    assert.equal(
      checkCredentials(bytes(`auth login ${b64(0xc0, 0x80)}`), false)?.reason,
      "bad_utf8",
    );
    assert.equal(checkCredentials(bytes(b64(0xed, 0xa0, 0x80)), true)?.reply.enhanced, "5.5.2");
    // Valid UTF-8 (U+FFFD itself included), "*", "=", other commands: left alone.
    assert.equal(checkCredentials(bytes(b64(0xef, 0xbf, 0xbd)), true), undefined);
    assert.equal(checkCredentials(bytes("*"), true), undefined);
    assert.equal(checkCredentials(bytes("AUTH PLAIN ="), false), undefined);
    assert.equal(checkCredentials(bytes(""), true), undefined);
    assert.equal(checkCredentials(bytes(`MAIL FROM:<${invalid}@x.example>`), false), undefined);
  });

  it("checkCredentials() refuses a response that is no base64 with 501 5.5.2 (RFC 4954)", () => {
    for (
      const [line, continuation] of [
        ["not base64!", true],
        ["%%%%", true],
        ["abcde", true], // a length no base64 text has
        ["AUTH PLAIN !!!notbase64!!!", false],
        ["auth login dXNlcg==x", false],
      ] as const
    ) {
      const refusal = checkCredentials(bytes(line), continuation);
      assert.equal(refusal?.reason, "bad_base64", line);
      assert.deepEqual(refusal?.reply, {
        code: 501,
        enhanced: "5.5.2",
        text: "Error: cannot decode the response as base64",
      });
    }
  });

  it("checkCommand() refuses a quoted local part holding @ with 550 5.7.1, as other routing", () => {
    for (
      const [line, to] of [
        ['RCPT TO:<"victim@remote.invalid"@example.test>', '"victim@remote.invalid"@example.test'],
        [
          'rcpt to:<@relay.test:"v@remote.invalid"@example.test>',
          '"v@remote.invalid"@example.test',
        ],
        ['RCPT TO:<"a\\"@b"@remote.invalid> NOTIFY=NEVER', '"a\\"@b"@remote.invalid'],
      ]
    ) {
      const refusal = checkCommand(bytes(line!), open);
      assert.equal(refusal?.reason, "routing_denied", line);
      assert.equal(refusal?.to, to);
      assert.deepEqual(refusal?.reply, {
        code: 550,
        enhanced: "5.7.1",
        text: "Relaying denied: sender-specified routing is not allowed",
      });
    }
    // With SMTPUTF8, a non-ASCII one too.
    assert.equal(
      checkCommand(bytes('RCPT TO:<"jörg@remote.invalid"@example.test>'), {
        transactionOpen: true,
        smtputf8: true,
      })?.reason,
      "routing_denied",
    );
    // Before MAIL smtp-server answers 503; quoted names without @ are addresses.
    assert.equal(checkCommand(bytes('RCPT TO:<"v@remote.invalid"@example.test>'), idle), undefined);
    assert.equal(checkCommand(bytes('RCPT TO:<"alice"@example.test>'), open), undefined);
    assert.equal(
      checkCommand(bytes('MAIL FROM:<"v@remote.invalid"@example.test>'), open),
      undefined,
    );
  });
});
