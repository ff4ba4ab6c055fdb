import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { libraryReply, stageOf } from "../../../src/smtp/library_replies.ts";

describe("library replies", () => {
  it("stageOf() names the stage of a command, and of a line answering a 334", () => {
    assert.equal(stageOf("EHLO", false), "helo");
    assert.equal(stageOf("HELO", false), "helo");
    assert.equal(stageOf("MAIL", false), "mail");
    assert.equal(stageOf("RCPT", false), "rcpt");
    assert.equal(stageOf("DATA", false), "data");
    assert.equal(stageOf("BDAT", false), "data");
    assert.equal(stageOf("AUTH", false), "auth");
    assert.equal(stageOf("NOOP", false), "command");
    assert.equal(stageOf(undefined, false), "command");
    assert.equal(stageOf(undefined, true), "auth");
  });

  it("libraryReply() gives each reply a reason from a small fixed set", () => {
    const cases: Array<[number, string, string]> = [
      [500, "Error: command not recognized", "unknown_command"],
      [501, "Error: Bad recipient address syntax", "bad_syntax"],
      [503, "Error: send HELO/EHLO first", "helo_first"],
      [503, "Error: need MAIL command", "bad_sequence"],
      [503, "Error: No identity changes permitted", "already_authenticated"],
      [504, "Error: Unrecognized authentication type", "unknown_mechanism"],
      [530, "Error: authentication Required", "auth_required"],
      [552, "Error: message exceeds fixed maximum message size 10000", "message_too_big"],
      [502, "VRFY command is disabled", "vrfy_disabled"],
      [421, "Timeout - closing connection", "timeout"],
      [421, "Server shutting down", "shutdown"],
      [421, "mx.test You talk too soon", "early_talker"],
      [451, "Error: internal server error", "local_error"],
      [554, "anything", "refused"],
      [450, "anything", "temporary_failure"],
    ];
    for (const [code, text, reason] of cases) {
      assert.equal(libraryReply(code, "5.0.0", text).reason, reason, text);
    }
  });
});
