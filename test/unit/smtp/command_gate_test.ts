import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gateCommand, type GateContext, verbOf } from "../../../src/smtp/command_gate.ts";

const line = (text: string) => new TextEncoder().encode(text);
const context: GateContext = {
  answering: false,
  transactionOpen: true,
  smtputf8: false,
};

describe("gateCommand", () => {
  it("verbOf() reads the verb as smtp-server does", () => {
    assert.equal(verbOf(line("mail FROM:<a@b>")), "MAIL");
    assert.equal(verbOf(line("NOOP")), "NOOP");
    assert.equal(verbOf(line(" DATA")), "");
  });

  it("gateCommand() names the stage of a raw-byte refusal", () => {
    assert.equal(gateCommand(line("RCPT TO:<jörg@x.test>"), context)?.stage, "rcpt");
    const helo = gateCommand(line("EHLO bücher.test"), context);
    assert.equal(helo?.stage, "helo");
    assert.equal(helo?.enhanced, false);
    assert.equal(gateCommand(line("MAIL FROM:<jörg@x.test>"), context)?.stage, "mail");
    assert.equal(gateCommand(new Uint8Array([0x4e, 0xff]), context)?.stage, "command");
  });
});
