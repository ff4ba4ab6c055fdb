/**
 * DataReplies: the tap on nodemailer's handler of the LMTP replies to the
 * data notes each recipient's reply before nodemailer acts on it, passes
 * every call through unchanged, and refuses a connection without the
 * handler (so a nodemailer upgrade that renames it fails here).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { DataReplies } from "../../../src/delivery/lmtp_replies.ts";

describe("DataReplies", () => {
  it("notes each reply by recipient before the handler runs, and passes the call on", () => {
    const calls: unknown[][] = [];
    let seen: unknown;
    const connection = {
      _actionLMTPStream(recipient: string, final: boolean, str: string, callback: unknown) {
        calls.push([this, recipient, final, str, callback]);
        seen = new Map(tap.replies);
        return "passed";
      },
    };
    const tap = DataReplies.attach(connection);
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
    tap.clear();
    assert.equal(tap.replies.size, 0);
    connection._actionLMTPStream("c@x.test", true, "garbled", callback);
    assert.deepEqual(tap.replies.get("c@x.test"), { code: undefined, response: "garbled" });
  });

  it("attaches to nodemailer's SMTPConnection, and refuses an object without the handler", () => {
    const connection = new SMTPConnection({ lmtp: true });
    assert.ok(DataReplies.attach(connection) instanceof DataReplies);
    assert.throws(() => DataReplies.attach({}), TypeError);
  });
});
