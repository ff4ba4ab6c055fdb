/**
 * RecipientReplies: the tap on nodemailer's handler of the LMTP replies to
 * the data notes each recipient's reply before nodemailer acts on it and
 * passes every call through unchanged; the refusals at RCPT come from the
 * envelope nodemailer keeps for the transaction in progress, not from one
 * left over from an earlier transaction, nor after a refused MAIL FROM.
 * A connection without the handler or the envelope is refused (so a
 * nodemailer upgrade that renames either fails here).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { RecipientReplies } from "../../../src/delivery/lmtp_replies.ts";

/** A refusal as nodemailer notes it in the envelope's rejectedErrors. */
const refusal = (command: string, recipient: string, response: string) =>
  Object.assign(new Error("Recipient command failed"), { command, recipient, response });

/** A stand-in for nodemailer's SMTPConnection: the handler and the envelope. */
function fakeConnection() {
  return {
    _envelope: false as object | false,
    _actionLMTPStream(_recipient: string, _final: boolean, _str: string, _callback: unknown) {
      return "passed";
    },
  };
}

describe("RecipientReplies", () => {
  it("notes each reply to the data by recipient before the handler runs, and passes the call on", () => {
    const calls: unknown[][] = [];
    let seen: unknown;
    const connection = {
      _envelope: false,
      _actionLMTPStream(recipient: string, final: boolean, str: string, callback: unknown) {
        calls.push([this, recipient, final, str, callback]);
        seen = new Map(tap.replies);
        return "passed";
      },
    };
    const tap = RecipientReplies.attach(connection);
    tap.begin();
    const callback = () => {};
    assert.equal(
      connection._actionLMTPStream("a@x.test", false, "250 2.0.0 ok", callback),
      "passed",
    );
    connection._actionLMTPStream("b@x.test", true, "452 4.2.2 full", callback);
    assert.deepEqual(calls, [
      [connection, "a@x.test", false, "250 2.0.0 ok", callback],
      [connection, "b@x.test", true, "452 4.2.2 full", callback],
    ]);
    // The last reply was noted by the time the handler ended the transaction.
    assert.deepEqual(seen, tap.replies);
    assert.deepEqual(Object.fromEntries(tap.replies), {
      "a@x.test": { code: 250, response: "250 2.0.0 ok" },
      "b@x.test": { code: 452, response: "452 4.2.2 full" },
    });
    tap.begin();
    assert.equal(tap.replies.size, 0);
    connection._actionLMTPStream("c@x.test", true, "garbled", callback);
    assert.deepEqual(tap.replies.get("c@x.test"), { code: undefined, response: "garbled" });
  });

  it("reads the refusals at RCPT of the transaction in progress from nodemailer's envelope", () => {
    const connection = fakeConnection();
    const tap = RecipientReplies.attach(connection);
    tap.begin();
    connection._envelope = {
      rejectedErrors: [
        refusal("RCPT TO", "gone@x.test", "550 5.1.1 no such user"),
        refusal("RCPT TO", "later@x.test", "450 4.2.1 try later"),
        // A refusal of the data: the handler's own reply is the one kept.
        refusal("DATA", "full@x.test", "552 5.2.2 full"),
        { command: "RCPT TO", response: "550 5.1.1 for nobody in particular" },
      ],
    };
    connection._actionLMTPStream("a@x.test", true, "250 2.0.0 saved", () => {});
    assert.deepEqual(Object.fromEntries(tap.replies), {
      "gone@x.test": { code: 550, response: "550 5.1.1 no such user" },
      "later@x.test": { code: 450, response: "450 4.2.1 try later" },
      "a@x.test": { code: 250, response: "250 2.0.0 saved" },
    });
  });

  it("ignores the envelope of an earlier transaction, and the RCPT replies after a refused MAIL FROM", () => {
    const connection = fakeConnection();
    const tap = RecipientReplies.attach(connection);
    tap.begin();
    const earlier = { rejectedErrors: [refusal("RCPT TO", "gone@x.test", "550 5.1.1 gone")] };
    connection._envelope = earlier;
    assert.equal(tap.replies.size, 1);
    // The next transaction fails before nodemailer sets its envelope.
    tap.begin();
    assert.equal(connection._envelope, earlier);
    assert.equal(tap.replies.size, 0);
    // A pipelined MAIL FROM refused: the 503s to RCPT are nobody's own.
    connection._envelope = {
      mailError: new Error("Mail command failed"),
      rejectedErrors: [refusal("RCPT TO", "a@x.test", "503 5.5.1 MAIL first")],
    };
    assert.equal(tap.replies.size, 0);
  });

  it("attaches to nodemailer's SMTPConnection, and refuses an object without the handler or the envelope", () => {
    const connection = new SMTPConnection({ lmtp: true });
    assert.ok(RecipientReplies.attach(connection) instanceof RecipientReplies);
    assert.throws(() => RecipientReplies.attach({}), TypeError);
    const { _envelope: _, ...withoutEnvelope } = fakeConnection();
    assert.throws(() => RecipientReplies.attach(withoutEnvelope), /_envelope/);
    assert.throws(() => RecipientReplies.attach({ _envelope: false }), /_actionLMTPStream/);
  });
});
