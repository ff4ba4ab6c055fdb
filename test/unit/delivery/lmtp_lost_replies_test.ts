/**
 * The LMTP courier against a scripted LMTP server on loopback that stops
 * replying to the data partway through the recipients (it hangs up, or
 * falls silent until the courier gives up): every reply given before that
 * is its recipient's result (RFC 2033 section 4.2), a 250 included, and
 * only the recipients without a reply wait for the next attempt.
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

/**
 * A scripted server whose first transaction gets `first` as its replies to
 * the data, and later ones 250 for each recipient; `stored` counts the
 * 250s per recipient (a mailbox's copies).
 */
async function server(first: string[], options: Omit<LmtpScript, "afterData"> = {}) {
  const stored = new Map<string, number>();
  let transactions = 0;
  const lmtp = await FakeMx.start(
    "127.0.0.1",
    0,
    lmtpDialogue({
      ...options,
      afterData: ({ to }) => {
        const replies = transactions++ === 0
          ? first
          : to.map((address) => `250 2.0.0 <${address}> saved`);
        for (const [i, reply] of replies.entries()) {
          if (reply.startsWith("250")) stored.set(to[i]!, (stored.get(to[i]!) ?? 0) + 1);
        }
        return replies;
      },
    }),
  );
  const endpoint: Endpoint = { kind: "tcp", host: "127.0.0.1", port: lmtp.port };
  return { lmtp, endpoint, stored };
}

const statuses = (results: Map<string, DeliveryResult>) =>
  Object.fromEntries([...results].map(([address, r]) => [address, r.status]));
const errorOf = (result: DeliveryResult | undefined) =>
  result && "error" in result ? result.error : "";

describe("LmtpCourier: a server that stops replying to the data", () => {
  it("takes a 250 to the data as final when the server hangs up before the other replies", {
    timeout: 30_000,
  }, async () => {
    const { lmtp, endpoint, stored } = await server(["250 2.0.0 <a@x.test> saved"]);
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const to = ["a@x.test", "b@x.test", "c@x.test"];
      const first = await courier.deliver(endpoint, { from, to }, message);
      assert.deepEqual(statuses(first), {
        "a@x.test": "sent",
        "b@x.test": "deferred",
        "c@x.test": "deferred",
      });
      assert.deepEqual(first.get("a@x.test"), { status: "sent", detail: "lmtp:a@x.test" });
      assert.match(errorOf(first.get("b@x.test")), /Connection closed unexpectedly/);
      // The next attempt has the recipients without a reply, as the queue
      // retries only those.
      const deferred = to.filter((a) => first.get(a)!.status === "deferred");
      const retry = await courier.deliver(endpoint, { from, to: deferred }, message);
      assert.deepEqual(statuses(retry), { "b@x.test": "sent", "c@x.test": "sent" });
      assert.deepEqual(
        Object.fromEntries(stored),
        { "a@x.test": 1, "b@x.test": 1, "c@x.test": 1 },
        lmtp.transcript,
      );
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  it("keeps each reply given before the server hung up (250, 5xx, 4xx); the rest are deferred", {
    timeout: 30_000,
  }, async () => {
    const { lmtp, endpoint } = await server([
      "250 2.0.0 <a@x.test> saved",
      "552 5.2.2 <b@x.test> Mailbox full",
      "452 4.2.2 <c@x.test> Mailbox full, for now",
    ]);
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const to = ["a@x.test", "b@x.test", "c@x.test", "d@x.test"];
      const results = await courier.deliver(endpoint, { from, to }, message);
      assert.deepEqual(statuses(results), {
        "a@x.test": "sent",
        "b@x.test": "failed",
        "c@x.test": "deferred",
        "d@x.test": "deferred",
      });
      const full = results.get("b@x.test")!;
      assert.equal("dsnStatus" in full ? full.dsnStatus : undefined, "5.2.2");
      assert.match(errorOf(full), /552 5\.2\.2 <b@x\.test> Mailbox full/);
      assert.match(errorOf(results.get("c@x.test")), /452 4\.2\.2/);
      assert.match(errorOf(results.get("d@x.test")), /Connection closed unexpectedly/);
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  it(
    "keeps each refusal at RCPT as its recipient's result when the server hangs up after the data",
    {
      timeout: 30_000,
    },
    async () => {
      const { lmtp, endpoint } = await server(["250 2.0.0 <a@x.test> saved"], {
        rcpt: (address) =>
          address.startsWith("gone@")
            ? "550 5.1.1 <gone@x.test> no such user"
            : address.startsWith("later@")
            ? "450 4.2.1 <later@x.test> try later"
            : "250 2.1.5 ok",
      });
      const courier = new LmtpCourier({ hostname: "mx.test" });
      try {
        const to = ["a@x.test", "gone@x.test", "later@x.test", "b@x.test"];
        const results = await courier.deliver(endpoint, { from, to }, message);
        // gone@ and later@ were answered at RCPT, before the data: that reply
        // is theirs, whatever becomes of the transaction. Only b@ has none.
        assert.deepEqual(statuses(results), {
          "a@x.test": "sent",
          "gone@x.test": "failed",
          "later@x.test": "deferred",
          "b@x.test": "deferred",
        }, lmtp.transcript);
        const gone = results.get("gone@x.test")!;
        assert.equal("dsnStatus" in gone ? gone.dsnStatus : undefined, "5.1.1");
        assert.match(errorOf(gone), /550 5\.1\.1 <gone@x\.test> no such user/);
        assert.match(errorOf(results.get("later@x.test")), /450 4\.2\.1 <later@x\.test> try later/);
        assert.match(errorOf(results.get("b@x.test")), /Connection closed unexpectedly/);
      } finally {
        courier.close();
        await lmtp.close();
      }
    },
  );

  it("defers every recipient when the server hangs up before any reply to the data", {
    timeout: 30_000,
  }, async () => {
    const { lmtp, endpoint, stored } = await server([]);
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const to = ["a@x.test", "b@x.test"];
      const results = await courier.deliver(endpoint, { from, to }, message);
      assert.deepEqual(statuses(results), { "a@x.test": "deferred", "b@x.test": "deferred" });
      assert.equal(lmtp.connections.length, 1, "not sent again in the attempt");
      const retry = await courier.deliver(endpoint, { from, to }, message);
      assert.deepEqual(statuses(retry), { "a@x.test": "sent", "b@x.test": "sent" });
      assert.deepEqual(Object.fromEntries(stored), { "a@x.test": 1, "b@x.test": 1 });
    } finally {
      courier.close();
      await lmtp.close();
    }
  });

  it("takes a 250 to the data as final when the server falls silent and the courier gives up", {
    timeout: 30_000,
  }, async () => {
    const { lmtp, endpoint } = await server(["250 2.0.0 <a@x.test> saved"], { silent: true });
    // The inactivity limit ends the wait for b@'s reply.
    const courier = new LmtpCourier({ hostname: "mx.test", commandTimeoutMs: 200 });
    try {
      const results = await courier.deliver(
        endpoint,
        { from, to: ["a@x.test", "b@x.test"] },
        message,
      );
      assert.deepEqual(statuses(results), { "a@x.test": "sent", "b@x.test": "deferred" });
      assert.ok(lmtp.connections[0]!.log.includes("silent"), lmtp.transcript);
    } finally {
      courier.close();
      await lmtp.close();
    }
  });
});
