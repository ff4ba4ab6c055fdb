import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gateCommand, type GateContext, verbOf } from "../../../src/smtp/command_gate.ts";

const line = (text: string) => new TextEncoder().encode(text);
const context: GateContext = {
  answering: false,
  lineTooLong: false,
  transactionOpen: true,
  smtputf8: false,
  authReady: true,
};

describe("gateCommand", () => {
  it("verbOf() reads the verb as smtp-server does", () => {
    assert.equal(verbOf(line("mail FROM:<a@b>")), "MAIL");
    assert.equal(verbOf(line("NOOP")), "NOOP");
    assert.equal(verbOf(line(" DATA")), "");
  });

  it("gateCommand() answers a line over the limit with 500 5.5.2, in AUTH with 500 5.5.6", () => {
    const long = gateCommand(line(""), { ...context, lineTooLong: true });
    assert.deepEqual(long?.reply, { code: 500, enhanced: "5.5.2", text: "Error: line too long" });
    assert.equal(long?.reason, "line_too_long");
    assert.equal(long?.close, false);
    const auth = gateCommand(line(""), { ...context, lineTooLong: true, answering: true });
    assert.equal(auth?.stage, "auth");
    assert.equal(auth?.reply.enhanced, "5.5.6");
  });

  it("gateCommand() answers every BDAT with 554 5.5.0 and ends the session", () => {
    for (const text of ["BDAT 86 LAST", "bdat 0", "BDAT", "BDAT\t5"]) {
      const refusal = gateCommand(line(text), { ...context, transactionOpen: false });
      assert.equal(refusal?.reply.code, 554, text);
      assert.equal(refusal?.reply.enhanced, "5.5.0");
      assert.equal(refusal?.close, true);
      assert.equal(refusal?.stage, "data");
    }
    // A line answering a 334 is credentials, whatever it says.
    assert.notEqual(gateCommand(line("BDAT 5"), { ...context, answering: true })?.close, true);
  });

  it("gateCommand() checks an AUTH initial response only when smtp-server would read it", () => {
    assert.equal(gateCommand(line("AUTH PLAIN %%%"), context)?.reason, "bad_base64");
    assert.equal(gateCommand(line("AUTH PLAIN %%%"), { ...context, authReady: false }), undefined);
  });

  it("gateCommand() names the stage of a raw-byte refusal", () => {
    const rcpt = gateCommand(line('RCPT TO:<"v@r.invalid"@example.test>'), context);
    assert.equal(rcpt?.stage, "rcpt");
    assert.equal(rcpt?.to, '"v@r.invalid"@example.test');
    const helo = gateCommand(line("EHLO bücher.test"), context);
    assert.equal(helo?.stage, "helo");
    assert.equal(helo?.enhanced, false);
    assert.equal(gateCommand(line("MAIL FROM:<jörg@x.test>"), context)?.stage, "mail");
    assert.equal(gateCommand(new Uint8Array([0x4e, 0xff]), context)?.stage, "command");
  });
});
