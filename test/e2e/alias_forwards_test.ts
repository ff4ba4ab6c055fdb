/**
 * An alias's remote targets end to end, with a real DNS server and SMTP
 * receivers on loopback: the targets of one domain share a transaction,
 * and what the remote side said reaches the sender's bounce.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import { cleanup, freePort, replies, type Server, startServer, swaks } from "./harness.ts";

describe("alias forwards", () => {
  let dns: TestDnsServer;
  let server: Server;
  let remote: SmtpReceiver;

  before(async () => {
    const port = await freePort();
    remote = await SmtpReceiver.start({ host: "127.0.0.61", port, starttls: false });
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.61"] },
    });
    server = await startServer({
      config: {
        "postern.yaml": [
          "hostname: mx.example.test",
          "dns:",
          `  servers: ["${dns.address}"]`,
          "  timeout: 2s",
          "delivery:",
          "  retry_initial: 1s",
          "  retry_max: 1s",
          "outbound:",
          `  port: ${port}`,
          "  mta_sts: false",
          "  connect_timeout: 2s",
          "",
        ].join("\n"),
        "domains/example.test/users": "alice\n",
        "domains/example.test/aliases": [
          "team: a@remote.test, b@remote.test, alice, c@remote.test",
          "",
        ].join("\n"),
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await remote?.close();
    await dns?.close();
  });

  /** Sends from outside to `to`; returns the queue ID. */
  async function send(to: string): Promise<string> {
    const result = await swaks(server, ["--from", "sender@client.test", "--to", to]);
    const accepted = replies(result.stdout).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
    assert.ok(accepted, `${to}: ${result.stdout}`);
    return accepted.split(" ").at(-1)!;
  }

  it("sends an alias's targets in one domain in one transaction (README, Outbound)", async () => {
    const before = remote.messages.length;
    const qid = await send("team@example.test");
    await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
    const got = remote.messages.slice(before);
    assert.equal(got.length, 1, JSON.stringify(got.map((m) => m.to)));
    assert.deepEqual(got[0]!.to.sort(), ["a@remote.test", "b@remote.test", "c@remote.test"]);
    assert.equal(got[0]!.from, "sender@client.test");
    // The copy says which alias it went through (a loop ends on its way back).
    assert.match(got[0]!.data, /^Delivered-To: team@example\.test\r?$/m);
  });
});
