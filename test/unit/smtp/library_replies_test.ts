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

  it("libraryReply() answers AUTH before STARTTLS with 538 5.7.11 (RFC 4954 section 6)", () => {
    assert.deepEqual(
      libraryReply(538, "5.7.0", "Error: Must issue a STARTTLS command first", "auth"),
      {
        reply: {
          code: 538,
          enhanced: "5.7.11",
          text: "Error: Must issue a STARTTLS command first",
        },
        reason: "tls_required",
      },
    );
  });

  it("libraryReply() answers undecodable AUTH responses with 501 5.5.2, a cancel with 5.7.0", () => {
    for (const text of ["Error: invalid userdata", "Error: missing username"]) {
      const { reply, reason } = libraryReply(501, "5.5.4", text, "auth");
      assert.equal(reply.enhanced, "5.5.2", text);
      assert.equal(reason, "bad_syntax");
    }
    const aborted = libraryReply(501, "5.5.4", "Authentication aborted", "auth");
    assert.deepEqual(aborted.reply, {
      code: 501,
      enhanced: "5.7.0",
      text: "Authentication aborted",
    });
    assert.equal(aborted.reason, "auth_aborted");
    // An AUTH line of bad syntax, a 501 outside AUTH, one without an
    // enhanced code (HELO): as smtp-server says.
    assert.equal(
      libraryReply(501, "5.5.4", "Error: syntax: AUTH PLAIN token", "auth").reply.enhanced,
      "5.5.4",
    );
    assert.equal(
      libraryReply(501, "5.1.7", "Error: Bad sender address syntax", "mail").reply.enhanced,
      "5.1.7",
    );
    assert.equal(libraryReply(501, "", "Error: Bad hostname syntax", "helo").reply.enhanced, "");
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
      assert.equal(libraryReply(code, "5.0.0", text, "command").reason, reason, text);
    }
  });
});
