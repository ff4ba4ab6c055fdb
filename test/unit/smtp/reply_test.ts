import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatReply, isPermanent, Replies, reply } from "../../../src/smtp/mod.ts";
import { ENHANCED_CODE_PREFIX, replyText } from "../../../src/smtp/reply.ts";

describe("formatReply", () => {
  it("formatReply() writes code, enhanced code and text separated by spaces", () => {
    assert.equal(formatReply(reply(250, "2.0.0", "Ok")), "250 2.0.0 Ok");
    assert.equal(formatReply(Replies.noSuchUser), "550 5.1.1 No such user here");
    assert.equal(
      formatReply(Replies.messageTooBig(1000)),
      "552 5.3.4 Message exceeds the size limit of 1000 bytes",
    );
  });

  it("formatReply() writes one space where a reply has no enhanced code (smtp-server's own)", () => {
    assert.equal(formatReply(reply(501, "", "Error: syntax")), "501 Error: syntax");
  });

  it("replyText() puts the enhanced code in front of the text", () => {
    assert.equal(replyText(Replies.localError), "4.3.0 Local error in processing, try again later");
    assert.match(replyText(Replies.relayDenied), ENHANCED_CODE_PREFIX);
  });

  it("isPermanent() is true only for 5xx replies", () => {
    assert.equal(isPermanent(Replies.noSuchUser), true);
    assert.equal(isPermanent(Replies.tooManyRecipients), false);
    assert.equal(isPermanent(reply(250, "2.0.0", "Ok")), false);
  });

  it("Replies carry enhanced codes whose class matches the reply code", () => {
    const all = [
      Replies.tooManyConnections,
      Replies.tooManyConnectionsFromIp,
      Replies.localError,
      Replies.messageTooBig(1),
      Replies.tooManyRecipients,
      Replies.relayDenied,
      Replies.noSuchUser,
    ];
    for (const r of all) {
      assert.equal(r.enhanced[0], String(r.code)[0], formatReply(r));
      assert.match(`${r.enhanced} `, ENHANCED_CODE_PREFIX);
    }
  });
});
