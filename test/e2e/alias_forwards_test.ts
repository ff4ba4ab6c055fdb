/**
 * An alias's remote targets end to end, with a real DNS server and SMTP
 * receivers on loopback: the targets of one domain share a transaction,
 * and what the remote side said reaches the sender's bounce.
 */

import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  replies,
  type Server,
  startServer,
  swaks,
} from "./harness.ts";

describe("alias forwards", () => {
  let dns: TestDnsServer;
  let server: Server;
  let remote: SmtpReceiver;

  before(async () => {
    const port = await freePort();
    remote = await SmtpReceiver.start({ host: "127.0.0.61", port, starttls: false });
    remote.behaviour = {
      rcptTo: (to) =>
        to === "busy@remote.test"
          ? { code: 451, text: "4.2.1 Mailbox busy, try later" }
          : to === "gone@remote.test"
          ? { code: 550, text: "5.1.1 No such user" }
          : undefined,
    };
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.61"] },
      "nullmx.test": { MX: [{ priority: 0, exchange: "" }] },
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
          // A warning as soon as a message waits: what it says of a deferral.
          "  delay_warning: 1s",
          "",
        ].join("\n"),
        "domains/example.test/users": "alice\n",
        "domains/example.test/aliases": [
          "team: a@remote.test, b@remote.test, alice, c@remote.test",
          "busylist: busy@remote.test",
          "gonelist: gone@remote.test",
          "half: gone@remote.test, a@remote.test",
          "nomail: x@nullmx.test",
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

  /** Sends to `to`, from outside unless `from` says; returns the queue ID. */
  async function send(to: string, from = "sender@client.test"): Promise<string> {
    const result = await swaks(server, ["--from", from, "--to", to]);
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

  /** The report about `qid` of `kind` in alice's Maildir, unfolded. */
  async function reportOf(qid: string, kind: "failed" | "delayed"): Promise<string> {
    await server.waitForLog(new RegExp(`qid=${qid} event=dsn kind=${kind}`));
    const found = await eventually(async () =>
      (await maildirMessages(server.dataDir, "example.test", "alice")).find((m) =>
        m.includes(`Queue ID: ${qid}`) && m.includes(`Action: ${kind}`)
      )
    );
    return found.replace(/\n[ \t]+/g, " ");
  }

  it("tells the sender which server deferred an alias's target, and its status", async () => {
    const qid = await send("busylist@example.test", "alice@example.test");
    const warning = await reportOf(qid, "delayed");
    assert.match(warning, /^Final-Recipient: rfc822; ?busylist@example\.test$/m);
    assert.match(warning, /^Status: 4\.2\.1$/m);
    assert.match(warning, /^Remote-MTA: dns; ?mx\.remote\.test$/m);
    assert.match(warning, /^Diagnostic-Code: smtp; ?451 4\.2\.1 Mailbox busy, try later$/m);
  });

  it("tells the sender which server refused an alias's target, and its status", async () => {
    const qid = await send("gonelist@example.test", "alice@example.test");
    const bounce = await reportOf(qid, "failed");
    assert.match(bounce, /^Status: 5\.1\.1$/m);
    assert.match(bounce, /^Remote-MTA: dns; ?mx\.remote\.test$/m);
    assert.match(bounce, /^Diagnostic-Code: smtp; ?550 5\.1\.1 No such user$/m);
  });

  it("bounces an alias's target in a domain with a null MX with 5.1.10, as it would the domain itself", async () => {
    const qid = await send("nomail@example.test", "alice@example.test");
    const bounce = await reportOf(qid, "failed");
    assert.match(bounce, /^Status: 5\.1\.10$/m);
  });

  it("keeps the remote server's reply, in our words, when the alias was partly delivered", async () => {
    const qid = await send("half@example.test", "alice@example.test");
    const bounce = await reportOf(qid, "failed");
    assert.match(bounce, /^Status: 5\.1\.1$/m);
    assert.match(bounce, /^Remote-MTA: dns; ?mx\.remote\.test$/m);
    assert.match(
      bounce,
      /^Diagnostic-Code: X-Postern; partly delivered: the message reached some of this address's destinations, not the others: .*said: 550 5\.1\.1 No such user$/m,
    );
  });
});

/**
 * A mail server that takes messages and holds its reply to each until the
 * test releases it, as a tarpit does; resolves `held` at the first hold.
 */
async function tarpit(host: string, port: number) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  let holding!: () => void;
  const held = new Promise<void>((resolve) => holding = resolve);
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.write("220 tarpit ESMTP\r\n");
    let buffer = "";
    let inData = false;
    socket.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("latin1");
      for (let nl = buffer.indexOf("\r\n"); nl >= 0; nl = buffer.indexOf("\r\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (inData) {
          if (line !== ".") continue;
          inData = false;
          holding();
          void released.then(() => socket.write("250 2.0.0 taken at last\r\n"));
        } else if (/^(EHLO|HELO)/i.test(line)) socket.write("250 tarpit\r\n");
        else if (/^DATA/i.test(line)) {
          inData = true;
          socket.write("354 go on\r\n");
        } else if (/^QUIT/i.test(line)) socket.end("221 bye\r\n");
        else socket.write("250 ok\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    held,
    release,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("alias forwards to a slow domain", () => {
  let dns: TestDnsServer;
  let server: Server;
  let slow: Awaited<ReturnType<typeof tarpit>>;

  before(async () => {
    const port = await freePort();
    slow = await tarpit("127.0.0.62", port);
    dns = await startDnsServer({
      "tarpit.test": { MX: [{ priority: 10, exchange: "mx.tarpit.test" }] },
      "mx.tarpit.test": { A: ["127.0.0.62"] },
    });
    server = await startServer({
      config: {
        "postern.yaml": [
          "hostname: mx.example.test",
          "dns:",
          `  servers: ["${dns.address}"]`,
          "delivery:",
          "  concurrency: 2",
          "outbound:",
          `  port: ${port}`,
          "  mta_sts: false",
          "  max_connections_per_destination: 1",
          "",
        ].join("\n"),
        "domains/example.test/users": "alice\n",
        "domains/example.test/aliases": "fw: x@tarpit.test\nnested: fw\n",
      },
    });
  });
  after(async () => {
    slow?.release();
    await cleanup(server);
    await slow?.close();
    await dns?.close();
  });

  it("keeps queue slots for other mail while forwards wait for a tarpitting domain (README, Fair queue)", async () => {
    const send = async (to: string) => {
      const result = await swaks(server, ["--from", "sender@client.test", "--to", to]);
      const accepted = replies(result.stdout).find((l) => l.startsWith("250 2.0.0 Ok: queued"));
      assert.ok(accepted, `${to}: ${result.stdout}`);
      return accepted.split(" ").at(-1)!;
    };
    // More forwards than there are queue slots (2); the first one is held.
    for (const to of ["fw", "nested", "fw"]) await send(`${to}@example.test`);
    await slow.held;
    const qid = await send("alice@example.test");
    // Delivered while the tarpit still holds the first forward: its domain
    // has one attempt (its connection limit), the other slot is free.
    await server.waitForLog(new RegExp(`qid=${qid} event=delivery .*result=sent`));
    assert.ok(!server.mailLog.some((l) => /to=<(fw|nested)@example\.test> result=sent/.test(l)));
    slow.release();
  });
});
