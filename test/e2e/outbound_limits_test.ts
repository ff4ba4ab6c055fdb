/**
 * Outbound delivery limits end to end: virtual MTAs with their own source
 * address and EHLO name, the per-destination connection limit with
 * connection reuse and the messages-per-connection cap, and a slow
 * destination that must not hold up the others.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import { cleanup, freePort, type Server } from "./harness.ts";
import { commonYaml, queued, startWith, submit } from "./outbound_relay_setup.ts";

/** A client address without the IPv4-mapped IPv6 prefix some runtimes add. */
function ipv4(address: string): string {
  return address.replace(/^::ffff:/, "");
}

describe("outbound: virtual MTAs and connection limits", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  let vmtaRx: SmtpReceiver;
  let busyRx: SmtpReceiver;

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    vmtaRx = await SmtpReceiver.start({ host: "127.0.0.35", port, starttls: false });
    // Each message is held a moment, so that deliveries overlap.
    busyRx = await SmtpReceiver.start({ host: "127.0.0.36", port, holdMs: 300 });
    dns = await startDnsServer({
      "vmta.test": { MX: [{ priority: 10, exchange: "mx.vmta.test" }] },
      "mx.vmta.test": { A: ["127.0.0.35"] },
      "busy.test": { MX: [{ priority: 10, exchange: "mx.busy.test" }] },
      "mx.busy.test": { A: ["127.0.0.36"] },
    });
    server = await startWith([
      ...commonYaml(submission, dns),
      "outbound:",
      `  port: ${port}`,
      "  connect_timeout: 3s",
      "  mta_sts: false",
      "  max_connections_per_destination: 2",
      "  messages_per_connection: 3",
      "  virtual_mtas:",
      "    ips2:",
      "      bind: 127.0.0.31",
      "      ehlo: out2.example.test",
      "  routes:",
      "    - sender_domain: second.test",
      "      mta: ips2",
    ]);
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([vmtaRx.close(), busyRx.close()]);
    await dns.close();
  });

  it("sends a routed sender's mail from the virtual MTA's address and EHLO name", async () => {
    const before = vmtaRx.messages.length;
    queued(await submit(submission, "bob@second.test", "x@vmta.test"));
    queued(await submit(submission, "alice@example.test", "y@vmta.test"));
    await vmtaRx.waitForMessages(before + 2);
    const bySender = (from: string) => {
      const message = vmtaRx.messages.slice(before).find((m) => m.from === from)!;
      assert.ok(message, `a message from ${from}`);
      return vmtaRx.connections.find((c) => c.id === message.connection)!;
    };
    const routed = bySender("bob@second.test");
    assert.equal(ipv4(routed.remoteAddress), "127.0.0.31");
    assert.equal(routed.ehlo, "out2.example.test");
    const plain = bySender("alice@example.test");
    assert.equal(ipv4(plain.remoteAddress), "127.0.0.1");
    assert.equal(plain.ehlo, "mail.example.test");
  });

  it("keeps to 2 connections per destination, reuses them, and closes each after 3 messages", async () => {
    const count = 10;
    const results = await Promise.all(
      Array.from(
        { length: count },
        (_, i) => submit(submission, "alice@example.test", `u${i}@busy.test`),
      ),
    );
    results.forEach(queued);
    await busyRx.waitForMessages(count, 40_000);
    const used = busyRx.connections.filter((c) => c.messages > 0);
    const carried = used.map((c) => c.messages);
    assert.ok(busyRx.peak <= 2, `at most 2 connections at once, saw ${busyRx.peak}`);
    assert.ok(busyRx.peak === 2, `the limit was reached (deliveries overlapped): ${busyRx.peak}`);
    assert.ok(
      busyRx.connections.length < count,
      `${busyRx.connections.length} connections for ${count} messages`,
    );
    assert.ok(Math.max(...carried) <= 3, `messages per connection: ${carried.join(", ")}`);
    assert.ok(Math.max(...carried) >= 2, `a connection was reused: ${carried.join(", ")}`);
    assert.equal(carried.reduce((a, b) => a + b, 0), count);
  });
});

describe("outbound: a slow destination does not hold up the others", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  let slowRx: SmtpReceiver;
  let fastRx: SmtpReceiver;

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    // Each message is held long enough for the whole test to happen meanwhile.
    slowRx = await SmtpReceiver.start({ host: "127.0.0.37", port, holdMs: 6000 });
    fastRx = await SmtpReceiver.start({ host: "127.0.0.38", port });
    dns = await startDnsServer({
      "slow.test": { MX: [{ priority: 10, exchange: "mx.slow.test" }] },
      "mx.slow.test": { A: ["127.0.0.37"] },
      "fast.test": { MX: [{ priority: 10, exchange: "mx.fast.test" }] },
      "mx.fast.test": { A: ["127.0.0.38"] },
    });
    server = await startWith([
      // outboundBaseYaml ends inside the delivery section.
      ...commonYaml(submission, dns),
      "  concurrency: 3",
      "outbound:",
      `  port: ${port}`,
      "  connect_timeout: 3s",
      "  mta_sts: false",
      "  max_connections_per_destination: 2",
    ]);
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([slowRx.close(), fastRx.close()]);
    await dns.close();
  });

  it("delivers to another domain while the slow one has its limit of attempts in flight", async () => {
    // Four messages for the slow domain: without a limit per destination in
    // the queue they would take all 3 delivery slots (2 connected, 1
    // waiting for a connection) and the fast domain would wait 6 s.
    const slow = await Promise.all(
      [0, 1, 2, 3].map((i) => submit(submission, "alice@example.test", `s${i}@slow.test`)),
    );
    slow.forEach(queued);
    queued(await submit(submission, "alice@example.test", "f@fast.test"));
    await fastRx.waitForMessages(1, 20_000);
    assert.equal(
      slowRx.messages.length,
      0,
      "the fast domain's message arrived before any slow one was accepted",
    );
    assert.ok(slowRx.peak <= 2, `at most 2 connections to the slow domain, saw ${slowRx.peak}`);
    // Nothing is lost: every slow message still arrives.
    await slowRx.waitForMessages(4, 60_000);
    assert.deepEqual(
      slowRx.messages.flatMap((m) => m.to).sort(),
      ["s0@slow.test", "s1@slow.test", "s2@slow.test", "s3@slow.test"],
    );
  });
});
