/**
 * lmtpResults(): each recipient's own reply (at RCPT or to the data) is its
 * result, a 250 to the data included whatever happens after it; a
 * recipient without a reply takes what the transaction's failure means for
 * it: a 5xx before the data fails it, anything after the data defers it.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { lmtpResults, type RecipientReply } from "../../../src/delivery/lmtp_results.ts";

const WHERE = "unix:/run/lmtp";
const reply = (response: string): RecipientReply => ({
  code: /^\d{3}/.test(response) ? Number(response.slice(0, 3)) : undefined,
  response,
});
const lost = { code: undefined, text: "Connection closed unexpectedly", afterData: true };

describe("lmtpResults()", () => {
  it("takes each recipient's reply: 2xx sent, 5xx failed with its status, 4xx deferred", () => {
    const results = lmtpResults(
      WHERE,
      ["ok@x.test", "full@x.test", "later@x.test", "odd@x.test"],
      new Map([
        ["ok@x.test", reply("250 2.0.0 <ok@x.test> saved")],
        ["full@x.test", reply("552 5.2.2 <full@x.test> Mailbox full")],
        ["later@x.test", reply("452 4.2.2 Mailbox full, for now")],
        ["odd@x.test", reply("no code here")],
      ]),
    );
    assert.deepEqual(Object.fromEntries(results), {
      "ok@x.test": { status: "sent", detail: "lmtp:ok@x.test" },
      "full@x.test": {
        status: "failed",
        error: "lmtp unix:/run/lmtp: 552 5.2.2 <full@x.test> Mailbox full",
        dsnStatus: "5.2.2",
      },
      "later@x.test": {
        status: "deferred",
        error: "lmtp unix:/run/lmtp: 452 4.2.2 Mailbox full, for now",
      },
      "odd@x.test": { status: "deferred", error: "lmtp unix:/run/lmtp: no code here" },
    });
  });

  it("keeps the replies given before a connection lost after the data; the rest are deferred", () => {
    const results = lmtpResults(
      WHERE,
      ["a@x.test", "b@x.test", "c@x.test", "d@x.test"],
      new Map([
        ["a@x.test", reply("250 2.0.0 saved")],
        ["b@x.test", reply("550 5.1.1 gone")],
        ["c@x.test", reply("451 4.3.0 busy")],
      ]),
      lost,
    );
    assert.deepEqual(
      [...results.values()].map((r) => r.status),
      ["sent", "failed", "deferred", "deferred"],
    );
    assert.deepEqual(results.get("d@x.test"), {
      status: "deferred",
      error: "lmtp unix:/run/lmtp: Connection closed unexpectedly",
    });
  });

  it("defers every recipient of a connection lost after the data before any reply", () => {
    const results = lmtpResults(WHERE, ["a@x.test", "b@x.test"], new Map(), lost);
    assert.deepEqual([...results.values()].map((r) => r.status), ["deferred", "deferred"]);
  });

  it("defers the recipients without a reply even for a 5xx once the data went out", () => {
    // A 5xx left on a closed connection answers nobody in particular: the
    // message may be stored for them, and a bounce would be wrong.
    const results = lmtpResults(
      WHERE,
      ["a@x.test", "b@x.test"],
      new Map([["a@x.test", reply("250 2.0.0 saved")]]),
      { code: 554, text: "554 5.3.0 shutting down", afterData: true },
    );
    assert.deepEqual([...results.values()].map((r) => r.status), ["sent", "deferred"]);
  });

  it("fails the recipients without a reply for a 5xx before the data, and keeps the refusals at RCPT", () => {
    const results = lmtpResults(
      WHERE,
      ["a@x.test", "b@x.test"],
      new Map([["b@x.test", reply("450 4.2.1 try later")]]),
      { code: 550, text: "550 5.7.1 Sender refused", afterData: false },
    );
    assert.deepEqual(results.get("a@x.test"), {
      status: "failed",
      error: "lmtp unix:/run/lmtp: 550 5.7.1 Sender refused",
      dsnStatus: "5.7.1",
    });
    assert.equal(results.get("b@x.test")!.status, "deferred");
  });

  it("defers the recipients for a 4xx or a failure without a code before the data", () => {
    for (const code of [421, undefined]) {
      const results = lmtpResults(WHERE, ["a@x.test"], new Map(), {
        code,
        text: "cannot connect to unix:/run/lmtp: ENOENT",
        afterData: false,
      });
      assert.equal(results.get("a@x.test")!.status, "deferred", String(code));
    }
  });

  it("defers a recipient a finished transaction left without a reply, and answers only `to`, in order", () => {
    const results = lmtpResults(
      WHERE,
      ["b@x.test", "a@x.test"],
      new Map([
        ["a@x.test", reply("250 2.0.0 saved")],
        ["other@x.test", reply("250 2.0.0 saved")],
      ]),
    );
    assert.deepEqual([...results.keys()], ["b@x.test", "a@x.test"]);
    assert.deepEqual(results.get("b@x.test"), {
      status: "deferred",
      error: "lmtp unix:/run/lmtp: no reply for this recipient",
    });
  });
});
