/**
 * The LMTP courier against a scripted LMTP server on loopback: a recipient
 * the server refused at RCPT takes that refusal as its result (4xx
 * deferred, 5xx failed with its enhanced status), whatever becomes of the
 * transaction afterwards: a refused DATA, a lost connection, a retry over
 * a new connection. Only a refused MAIL FROM speaks for every recipient,
 * since the RCPT replies that follow it are about the missing transaction.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LmtpCourier } from "../../../src/delivery/lmtp.ts";
import type { DeliveryResult } from "../../../src/queue/mod.ts";
import type { Endpoint } from "../../../src/users/endpoint.ts";
import { FakeMx } from "../../support/fake_mx.ts";
import { lmtpDialogue, type LmtpScript } from "../../support/fake_lmtp.ts";
import { chunksOf } from "../helpers.ts";

const message = () => chunksOf("Subject: t\r\n\r\nbody\r\n");
const from = "s@example.org";

async function server(script: LmtpScript) {
  const lmtp = await FakeMx.start("127.0.0.1", 0, lmtpDialogue(script));
  const endpoint: Endpoint = { kind: "tcp", host: "127.0.0.1", port: lmtp.port };
  return { lmtp, endpoint };
}

/** Each recipient's status, and its enhanced status code or the reply in its error. */
function outcomes(results: Map<string, DeliveryResult>): Record<string, string> {
  return Object.fromEntries(
    [...results].map(([address, r]) => {
      if (r.status === "sent") return [address, "sent"];
      const detail = r.status === "failed" ? r.dsnStatus : /: (\d{3} \S+)/.exec(r.error)?.[1];
      return [address, `${r.status} ${detail}`];
    }),
  );
}

describe("LmtpCourier: a recipient refused at RCPT", () => {
  it("is deferred for its own 4xx although the server then refuses DATA with a 5xx", {
    timeout: 30_000,
  }, async () => {
    const { lmtp, endpoint } = await server({
      rcpt: (address) =>
        address === "a@x.test" ? "450 4.2.2 <a@x.test> over quota" : "250 2.1.5 ok",
      data: () => "554 5.3.4 message refused",
    });
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const results = await courier.deliver(
        endpoint,
        { from, to: ["a@x.test", "b@x.test"] },
        message,
      );
      // RFC 5321 section 4.2.1: a 4xx may be asked again; a bounce for a@
      // would be wrong. The 554 to DATA answers b@ alone.
      assert.deepEqual(outcomes(results), {
        "a@x.test": "deferred 450 4.2.2",
        "b@x.test": "failed 5.3.4",
      }, lmtp.transcript);
      assert.equal(lmtp.connections.flatMap((c) => c.messages).length, 0);
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  it("fails for its own 5xx although the server then refuses DATA with a 4xx", {
    timeout: 30_000,
  }, async () => {
    const { lmtp, endpoint } = await server({
      rcpt: (address) =>
        address === "a@x.test" ? "550 5.1.1 <a@x.test> no such user" : "250 2.1.5 ok",
      data: () => "451 4.3.0 try again later",
    });
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const results = await courier.deliver(
        endpoint,
        { from, to: ["a@x.test", "b@x.test"] },
        message,
      );
      assert.deepEqual(outcomes(results), {
        "a@x.test": "failed 5.1.1",
        "b@x.test": "deferred 451 4.3.0",
      }, lmtp.transcript);
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  it("keeps its refusal when a kept connection's transaction fails and is tried over a new one", {
    timeout: 30_000,
  }, async () => {
    let transactions = 0;
    const { lmtp, endpoint } = await server({
      rcpt: (address) =>
        address === "a@x.test" ? "450 4.2.2 <a@x.test> over quota" : "250 2.1.5 ok",
      data: () => transactions++ === 0 ? "354 go ahead" : "554 5.3.4 message refused",
    });
    const courier = new LmtpCourier({ hostname: "mx.test", idleMs: 60_000 });
    try {
      const envelope = { from, to: ["a@x.test", "b@x.test"] };
      const first = await courier.deliver(endpoint, envelope, message);
      assert.deepEqual(outcomes(first), { "a@x.test": "deferred 450 4.2.2", "b@x.test": "sent" });
      // The kept connection's transaction fails before the data, so the
      // courier tries a new connection at once; each try answers a@ again.
      const second = await courier.deliver(endpoint, envelope, message);
      assert.deepEqual(outcomes(second), {
        "a@x.test": "deferred 450 4.2.2",
        "b@x.test": "failed 5.3.4",
      }, lmtp.transcript);
      assert.equal(lmtp.connections.length, 2, lmtp.transcript);
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  it(
    "gives way to a refused MAIL FROM: the pipelined RCPT replies after it are no recipient's own",
    {
      timeout: 30_000,
    },
    async () => {
      for (
        const [mail, expected] of [
          ["451 4.3.0 try again later", "deferred 451 4.3.0"],
          ["550 5.7.1 sender refused", "failed 5.7.1"],
        ] as const
      ) {
        const { lmtp, endpoint } = await server({ mail: () => mail });
        const courier = new LmtpCourier({ hostname: "mx.test" });
        try {
          const results = await courier.deliver(
            endpoint,
            { from, to: ["a@x.test", "b@x.test"] },
            message,
          );
          // The server answered each pipelined RCPT with 503 5.5.1.
          assert.match(lmtp.transcript, /503 5\.5\.1 MAIL first/);
          assert.deepEqual(
            outcomes(results),
            { "a@x.test": expected, "b@x.test": expected },
            lmtp.transcript,
          );
        } finally {
          courier.close();
          await lmtp.close();
        }
      }
    },
  );
  it("gives every refusal when the server closes the connection instead of answering the RSET", {
    timeout: 30_000,
  }, async () => {
    // nodemailer drops the RSET's callback when the connection closes: the
    // delivery (and its queue attempt) waited for it for ever.
    const { lmtp, endpoint } = await server({
      rcpt: (address) => `550 5.1.1 <${address}> no such user`,
      closeAtRset: true,
    });
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const results = await courier.deliver(endpoint, { from, to: ["a@x.test"] }, message);
      assert.deepEqual(outcomes(results), { "a@x.test": "failed 5.1.1" }, lmtp.transcript);
      assert.ok(lmtp.transcript.includes("closed at RSET"), lmtp.transcript);
      // The closed connection is not kept: the next message opens a new one.
      const again = await courier.deliver(endpoint, { from, to: ["b@x.test"] }, message);
      assert.deepEqual(outcomes(again), { "b@x.test": "failed 5.1.1" }, lmtp.transcript);
      assert.equal(courier.connectionsOpened, 2);
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  // A connection whose transaction could not be ended serves nothing more:
  // the courier says QUIT at once rather than leave the socket for the
  // server's timeout (RFC 5321 section 4.1.1.10), and closes it itself when
  // the QUIT goes unanswered too; the command timeout (5 minutes by
  // default) is not what ends it.
  for (
    const { name, ignoreQuit, seen } of [
      { name: "quits a connection whose RSET was refused", ignoreQuit: false, seen: /C: QUIT/ },
      {
        name: "closes that connection itself when the store does not answer the QUIT",
        ignoreQuit: true,
        seen: /QUIT ignored/,
      },
    ]
  ) {
    it(name, { timeout: 30_000 }, async () => {
      const { lmtp, endpoint } = await server({
        rcpt: (address) => `550 5.1.1 <${address}> no such user`,
        rset: () => "500 5.5.1 confused",
        ignoreQuit,
      });
      const courier = new LmtpCourier({ hostname: "mx.test", idleMs: 60_000 });
      try {
        const results = await courier.deliver(endpoint, { from, to: ["a@x.test"] }, message);
        assert.deepEqual(outcomes(results), { "a@x.test": "failed 5.1.1" }, lmtp.transcript);
        const connection = lmtp.connections[0];
        assert.ok(connection, lmtp.transcript);
        await connection.closed;
        assert.match(lmtp.transcript, seen, lmtp.transcript);
        const again = await courier.deliver(endpoint, { from, to: ["b@x.test"] }, message);
        assert.deepEqual(outcomes(again), { "b@x.test": "failed 5.1.1" }, lmtp.transcript);
        assert.equal(courier.connectionsOpened, 2);
      } finally {
        courier.close();
        await lmtp.close();
      }
    });
  }
});
