/**
 * Outbound delivery to MX hosts that misbehave, end to end: Postern looks
 * the hosts up on the loopback DNS server and delivers to scripted servers
 * on 127.0.0.x (test/support/fake_mx.ts). A STARTTLS that fails however it
 * fails, a reply trickled a byte at a time, malformed replies, every
 * recipient refused under PIPELINING, a reused connection lost after the
 * data, an MX host that hangs up at once, and a domain with more dead MX
 * hosts than an attempt tries.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { dialogue, FakeMx, type FakeMxConnection } from "../support/fake_mx.ts";
import {
  cleanup,
  freePort,
  outboundBaseYaml,
  queuedId,
  type Server,
  startServer,
  submitMail,
  tempDir,
  writeTree,
} from "./harness.ts";

/** The first delivery line of `id` (each attempt logs one per recipient). */
function firstDelivery(server: Server, id: string): Promise<string> {
  return server.waitForLog(new RegExp(`qid=${id} event=delivery `), 40_000);
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("outbound delivery to misbehaving MX hosts", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  const fakes = new Map<string, FakeMx>();
  const alice = { user: "alice@example.test", password: "pw-alice-1" };
  const submit = (to: string, subject = "hello") =>
    submitMail(submission, alice, alice.user, [to], ["--header", `Subject: ${subject}`]);
  const fake = (name: string) => fakes.get(name)!;

  /** Connection `c` took a message whose data holds `text`. */
  const took = (c: FakeMxConnection, text: string) => c.messages.some((m) => m.data.includes(text));

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    const starttls = "250-fake.mx\r\n250-STARTTLS\r\n250 PIPELINING";
    // Per connection: the messages it took, for the reused-connection case.
    const taken = new WeakMap<FakeMxConnection, number>();
    const scripts: Record<string, [string, (c: FakeMxConnection) => Promise<void>]> = {
      tlsgarbage: ["127.0.0.121", dialogue({ ehlo: starttls, starttls: "garbage" })],
      tlsalert: ["127.0.0.122", dialogue({ ehlo: starttls, starttls: "alert" })],
      trickle: ["127.0.0.123", dialogue({ mail: trickle })],
      malformed: [
        "127.0.0.124",
        dialogue({
          rcpt: (address) =>
            address.startsWith("mixed@")
              ? "250-2.1.5 fine\r\n550 5.1.1 no such user"
              : address.startsWith("low@")
              ? "150 6.6.6 not a reply code"
              : "250 2.1.5 ok",
        }),
      ],
      allrefused: ["127.0.0.125", dialogue({ rcpt: () => "550 5.1.1 no such user" })],
      reuse: [
        "127.0.0.126",
        dialogue({
          afterData: (_message, c) => {
            const count = (taken.get(c) ?? 0) + 1;
            taken.set(c, count);
            // The second message of a connection: the data is in, the reply is lost.
            return count === 2 ? "close" : "250 2.0.0 accepted";
          },
        }),
      ],
      closer: ["127.0.0.128", (c) => {
        c.destroy();
        return Promise.resolve();
      }],
      manymx: ["127.0.0.127", (c) => {
        c.send("421 4.3.2 busy, try another host\r\n");
        c.destroy();
        return Promise.resolve();
      }],
    };
    for (const [name, [host, script]] of Object.entries(scripts)) {
      fakes.set(name, await FakeMx.start(host, port, script));
    }
    const zone: Parameters<typeof startDnsServer>[0] = {};
    for (const [name, [host]] of Object.entries(scripts)) {
      zone[`${name}.test`] = { MX: [{ priority: 10, exchange: `mx.${name}.test` }] };
      zone[`mx.${name}.test`] = { A: [host] };
    }
    // The preferred host hangs up before its greeting; the next one works.
    zone["closer.test"]!.MX!.push({ priority: 20, exchange: "mx2.closer.test" });
    zone["mx2.closer.test"] = { A: ["127.0.0.129"] };
    fakes.set("closer2", await FakeMx.start("127.0.0.129", port, dialogue()));
    // Eight MX hosts that all answer 421: an attempt tries five addresses.
    zone["manymx.test"] = {
      MX: Array.from(
        { length: 8 },
        (_, i) => ({ priority: 10 + i, exchange: `mx${i}.manymx.test` }),
      ),
    };
    for (let i = 0; i < 8; i++) zone[`mx${i}.manymx.test`] = { A: ["127.0.0.127"] };
    dns = await startDnsServer(zone);
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        ...outboundBaseYaml(submission, dns.address),
        "outbound:",
        `  port: ${port}`,
        "  connect_timeout: 5s",
        "  command_timeout: 2s",
        "  connection_idle: 60s",
        "  mta_sts: false",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword(alice.password)}\n`,
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    for (const f of fakes.values()) await f.close();
    await dns?.close();
  });

  for (const kind of ["garbage", "alert"] as const) {
    it(`retries in plain text at once when the STARTTLS handshake fails (${kind}; RFC 7435)`, async () => {
      const name = `tls${kind}`;
      const id = queuedId(await submit(`bob@${name}.test`, `tls ${kind}`));
      const line = await firstDelivery(server, id);
      assert.match(line, /result=sent/, fake(name).transcript);
      const [tls, plain] = fake(name).connections;
      assert.ok(tls!.log.includes("C: STARTTLS"), fake(name).transcript);
      assert.ok(!plain!.log.includes("C: STARTTLS"), "the retry does not ask for TLS");
      assert.ok(took(plain!, `tls ${kind}`), fake(name).transcript);
    });
  }

  it("gives up on a reply that trickles in, at the deadline for each reply (RFC 5321 section 4.5.3.2)", async () => {
    const id = queuedId(await submit("bob@trickle.test"));
    const line = await firstDelivery(server, id);
    assert.match(line, /result=deferred/);
    assert.match(line, /no complete reply to MAIL within 2 s/);
    const [first] = fake("trickle").connections;
    await first!.closed;
    // Postern hung up while the reply was still coming, a byte at a time
    // (each byte well within the inactivity timeout).
    assert.ok(first!.log.includes("closed while trickling"), fake("trickle").transcript);
  });

  it("fails the transaction for a malformed or out-of-range reply (RFC 5321 section 4.2.1)", async () => {
    const mixed = queuedId(await submit("mixed@malformed.test"));
    const low = queuedId(await submit("low@malformed.test"));
    for (const [id, reply] of [[mixed, "550 5.1.1 no such user"], [low, "150 6.6.6"]]) {
      const line = await firstDelivery(server, id!);
      assert.match(line, /result=failed/, line);
      assert.match(line, /malformed reply to RCPT/);
      assert.ok(line.includes(reply!), line);
      await server.waitForLog(new RegExp(`qid=${id} event=dsn kind=failed`));
    }
  });

  it("ends the data with a lone dot when every recipient was refused but DATA got 354 (RFC 2920 section 3.1)", async () => {
    const id = queuedId(await submit("nobody@allrefused.test"));
    const line = await firstDelivery(server, id);
    assert.match(line, /result=failed/);
    assert.match(line, /550 5\.1\.1 no such user/);
    const [c] = fake("allrefused").connections;
    assert.ok(c!.log.includes("C: <data 0 bytes>"), fake("allrefused").transcript);
  });

  it("does not send again at once when a reused connection is lost after the data", async () => {
    const first = queuedId(await submit("a@reuse.test", "first message"));
    assert.match(await firstDelivery(server, first), /result=sent/);
    const second = queuedId(await submit("b@reuse.test", "second message"));
    const line = await firstDelivery(server, second);
    const copies = () => fake("reuse").connections.filter((c) => took(c, "second message")).length;
    assert.match(line, /result=deferred/, fake("reuse").transcript);
    assert.equal(copies(), 1, "one copy in the attempt");
    assert.equal(fake("reuse").connections.length, 1, "over the reused connection");
    // The next attempt sends it again: the duplicate RFC 5321 section 6.1 accepts.
    await server.waitForLog(new RegExp(`qid=${second} event=delivery .*result=sent`));
    assert.equal(copies(), 2);
  });

  it("tries the next MX host when one hangs up before its greeting (RFC 5321 section 5.1)", async () => {
    const id = queuedId(await submit("x@closer.test", "after a hang-up"));
    const line = await firstDelivery(server, id);
    assert.match(line, /result=sent dest="mx2\.closer\.test/);
    assert.equal(fake("closer").connections.length, 1);
    assert.ok(took(fake("closer2").connections[0]!, "after a hang-up"));
  });

  it("tries at most five addresses in one attempt", async () => {
    const id = queuedId(await submit("x@manymx.test"));
    const line = await firstDelivery(server, id);
    assert.match(line, /result=deferred/);
    assert.match(line, /5 addresses tried/);
    assert.equal(fake("manymx").connections.length, 5);
  });
});

/**
 * Answers MAIL FROM with "250-" and then one byte every 200 ms (inside any
 * inactivity timeout), up to 150 bytes; notes whether the client hung up
 * while it went on.
 */
async function trickle(_line: string, c: FakeMxConnection): Promise<boolean> {
  let ended = false;
  // Noted as the connection closes, before anyone awaiting `closed` resumes.
  void c.closed.then(() =>
    c.log.push(ended ? "closed after the trickle" : "closed while trickling")
  );
  c.send("250-");
  for (let i = 0; i < 150 && !c.isClosed; i++) {
    c.socket.write("x");
    await wait(200);
  }
  ended = !c.isClosed;
  await c.closed;
  return true;
}
