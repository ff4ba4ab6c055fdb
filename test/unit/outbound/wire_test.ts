/**
 * Tests of the wire that watches nodemailer's SMTP dialogue: what it hands
 * on, what it learns (STARTTLS sent, EHLO keywords), the MAIL FROM
 * parameters it adds, malformed replies (RFC 5321 section 4.2.1) and the
 * deadline for each reply (section 4.5.3.2). A stand-in connection records
 * what nodemailer would have written and read.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Wire, type WireFailure } from "../../../src/outbound/wire.ts";

/**
 * What nodemailer's SMTPConnection would write and read, recorded; once
 * closed (as the session closes it on a failure) it reads nothing more.
 */
class StandIn {
  written: string[] = [];
  read = "";
  closed = false;
  _sendCommand(str: string): void {
    this.written.push(str);
  }
  _onData(chunk: Uint8Array): void {
    if (!this.closed) this.read += new TextDecoder().decode(chunk);
  }
}

function setUp(replyTimeoutMs = 60_000) {
  const connection = new StandIn();
  const failures: WireFailure[] = [];
  let failed: (failure: WireFailure) => void = () => {};
  const failure = new Promise<WireFailure>((resolve) => failed = resolve);
  const wire = Wire.attach(connection, {
    replyTimeoutMs,
    dataEndTimeoutMs: 2 * replyTimeoutMs,
    onFailure: (f) => {
      connection.closed = true;
      failures.push(f);
      failed(f);
    },
  });
  const send = (line: string) => connection._sendCommand(line);
  let fed = "";
  /** Feeds `text` in pieces of `size` bytes. */
  const feed = (text: string, size = text.length) => {
    fed += text;
    const bytes = new TextEncoder().encode(text);
    for (let i = 0; i < bytes.length; i += size) connection._onData(bytes.subarray(i, i + size));
  };
  return { connection, wire, failures, failure, send, feed, fed: () => fed };
}

describe("Wire", () => {
  it("hands every reply on as it came and learns the EHLO keywords, forgotten at STARTTLS", () => {
    const { connection, wire, failures, send, feed, fed } = setUp();
    try {
      feed("220 mx ESMTP\r\n");
      send("EHLO me.test");
      feed("250-mx.test hello\r\n250-8bitmime\r\n250-SIZE 100\r\n250 SMTPUTF8\r\n", 3);
      assert.equal(wire.offers("8BITMIME"), true);
      assert.equal(wire.offers("SIZE"), true);
      assert.equal(wire.offers("SMTPUTF8"), true);
      assert.equal(wire.offers("MX"), false, "the greeting line is not a keyword");
      assert.equal(wire.starttlsSent, false);
      send("STARTTLS");
      assert.equal(wire.starttlsSent, true);
      // What follows the 220 on the plain socket is nobody's reply.
      feed("220 go ahead\r\nnot a reply\r\n");
      assert.equal(wire.offers("8BITMIME"), false, "RFC 3207: knowledge from before TLS goes");
      assert.deepEqual(failures, []);
      assert.equal(connection.read, fed());
    } finally {
      wire.stop();
    }
  });

  it("adds the MAIL FROM parameters asked for, once, and to MAIL only", () => {
    const { connection, wire, send } = setUp();
    try {
      wire.mailParameters = ["SMTPUTF8"];
      send("MAIL FROM:<a@example.test> BODY=8BITMIME");
      send("MAIL FROM:<jürgen@example.test> SMTPUTF8");
      send("RCPT TO:<b@example.test>");
      assert.deepEqual(connection.written, [
        "MAIL FROM:<a@example.test> BODY=8BITMIME SMTPUTF8",
        "MAIL FROM:<jürgen@example.test> SMTPUTF8",
        "RCPT TO:<b@example.test>",
      ]);
    } finally {
      wire.stop();
    }
  });

  it("withholds a malformed reply and what follows it, and reports it with its command", () => {
    const cases = [
      ["250-2.1.5 fine\r\n550 5.1.1 no such user\r\n", "550 5.1.1 no such user"],
      ["650 6.6.6 out of range\r\n", "650 6.6.6 out of range"],
      ["150 too low\r\n", "150 too low"],
      ["25 short\r\n", "25 short"],
    ];
    for (const [reply, shown] of cases) {
      for (const size of [1000, 5]) {
        const { connection, wire, failures, send, feed } = setUp();
        try {
          send("MAIL FROM:<a@example.test>");
          send("RCPT TO:<b@example.test>");
          send("DATA");
          feed(`250 2.1.0 ok\r\n${reply}354 go ahead\r\n`, size);
          assert.deepEqual(failures, [{ kind: "malformed", command: "RCPT", reply: shown }]);
          if (size === 1000) {
            assert.equal(connection.read, "250 2.1.0 ok\r\n", "only the reply before it");
          } else {
            // In small pieces, the start of the bad reply was handed on
            // before it was known to be bad, but never its end.
            assert.ok(connection.read.startsWith("250 2.1.0 ok\r\n"));
            assert.ok(!connection.read.includes(`${shown}\r\n`), connection.read);
          }
        } finally {
          wire.stop();
        }
      }
    }
  });

  it("takes well-formed replies of any shape RFC 5321 allows", () => {
    const { connection, wire, failures, send, feed } = setUp();
    try {
      send("MAIL FROM:<a@example.test>");
      send("RCPT TO:<b@example.test>");
      send("DATA");
      const replies = "250\r\n\r\n251-one\r\n251-\r\n251 two\r\n354 go\r\n";
      feed(replies, 1);
      assert.deepEqual(failures, []);
      assert.equal(connection.read, replies);
    } finally {
      wire.stop();
    }
  });

  it("reports a reply that is not complete by its deadline, however it trickles in", async () => {
    const { wire, failure, send, feed } = setUp(50);
    try {
      send("EHLO me.test");
      feed("250 ok\r\n");
      send("MAIL FROM:<a@example.test>");
      feed("250-");
      // The reply keeps coming, a byte at a time, and never ends.
      const dripping = setInterval(() => feed("x"), 5);
      try {
        assert.deepEqual(await failure, { kind: "timeout", command: "MAIL", limitMs: 50 });
      } finally {
        clearInterval(dripping);
      }
    } finally {
      wire.stop();
    }
  });

  it("gives the reply to the end of the data its own, longer deadline", async () => {
    const { wire, failure, send, feed } = setUp(20);
    try {
      send("DATA");
      feed("354 go ahead\r\n");
      wire.dataEnd();
      assert.deepEqual(await failure, { kind: "timeout", command: "end of data", limitMs: 40 });
    } finally {
      wire.stop();
    }
  });

  it("refuses a connection object without the methods it wraps", () => {
    assert.throws(
      () => Wire.attach({}, { replyTimeoutMs: 1, dataEndTimeoutMs: 1, onFailure: () => {} }),
      TypeError,
    );
  });
});
