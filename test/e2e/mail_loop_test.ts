/**
 * Mail forwarding loops end to end (RFC 5321 section 6.3): two servers
 * whose aliases forward to each other, and a message that comes back to a
 * mailbox it was delivered to. Local delivery adds Delivered-To, forwards
 * included, and refuses a message that already has its recipient's
 * (5.4.6), as Postfix's local(8) does.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
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

/** Sends a message to `server`'s inbound port; returns its queue ID. */
async function send(server: Server, from: string, to: string, extra: string[] = []) {
  const result = await swaks(server, ["--from", from, "--to", to, ...extra]);
  const accepted = replies(result.stdout).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
  assert.ok(accepted, `${to}: ${result.stdout}`);
  return accepted.split(" ").at(-1)!;
}

/** The bounce about `qid` in `user`'s Maildir on `server`, unfolded. */
async function bounceOf(server: Server, domain: string, user: string, qid: string) {
  await server.waitForLog(new RegExp(`qid=${qid} event=dsn kind=failed`));
  const found = await eventually(async () =>
    (await maildirMessages(server.dataDir, domain, user)).find((m) =>
      m.includes(`Queue ID: ${qid}`)
    )
  );
  return found.replace(/\n[ \t]+/g, " ");
}

describe("mail forwarding loops", () => {
  let dns: TestDnsServer;
  let a: Server;
  let b: Server;

  before(async () => {
    dns = await startDnsServer({
      "a.test": { MX: [{ priority: 10, exchange: "mx.loop.test" }] },
      "b.test": { MX: [{ priority: 10, exchange: "mx.loop.test" }] },
      "mx.loop.test": { A: ["127.0.0.1"] },
    });
    // Each server sends to the other's port: x@a.test forwards to
    // x@b.test, which forwards back.
    const portA = await freePort();
    const portB = await freePort();
    const config = (hostname: string, outboundPort: number) =>
      [
        `hostname: ${hostname}`,
        "dns:",
        `  servers: ["${dns.address}"]`,
        "  timeout: 2s",
        "delivery:",
        "  retry_initial: 1s",
        "  retry_max: 2s",
        "outbound:",
        `  port: ${outboundPort}`,
        "  mta_sts: false",
        "  connect_timeout: 2s",
        "",
      ].join("\n");
    a = await startServer({
      port: portA,
      config: {
        "postern.yaml": config("mx.a.test", portB),
        "domains/a.test/users": "alice\nx\n",
        "domains/a.test/aliases": "x: x@b.test\n",
      },
    });
    b = await startServer({
      port: portB,
      config: {
        "postern.yaml": config("mx.b.test", portA),
        "domains/b.test/users": "x\n",
        "domains/b.test/aliases": "x: x@a.test\n",
      },
    });
  });
  after(async () => {
    await cleanup(a);
    await cleanup(b);
    await dns?.close();
  });

  it("stops a loop between two servers the second time round, and bounces it with 5.4.6", async () => {
    const qid = await send(a, "alice@a.test", "x@a.test");
    // A forwards to B, B back to A, which sees its own Delivered-To.
    const failed = await a.waitForLog(
      /event=delivery to=<x@a\.test> result=failed error="mail forwarding loop for x@a\.test"/,
      30_000,
    );
    const back = /qid=(\w+) /.exec(failed)![1]!;
    assert.notEqual(back, qid, "the first copy failed, not the one that came back");
    assert.equal(a.mailLog.filter((l) => / event=queued .*to=<x@a\.test>/.test(l)).length, 2);
    assert.equal(b.mailLog.filter((l) => / event=queued /.test(l)).length, 1);
    // The copy that came back carries both servers' Delivered-To.
    const bounce = await bounceOf(a, "a.test", "alice", back);
    assert.match(bounce, /^Status: 5\.4\.6$/m);
    assert.match(bounce, /^Delivered-To: x@b\.test$/m);
    assert.match(bounce, /^Delivered-To: x@a\.test$/m);
  });

  it("refuses to deliver again to a mailbox the message was delivered to", async () => {
    const qid = await send(a, "alice@a.test", "alice@a.test", [
      "--add-header",
      "Delivered-To: Alice@A.test",
    ]);
    const line = await a.waitForLog(new RegExp(`qid=${qid} event=delivery `));
    assert.match(line, /result=failed error="mail forwarding loop for alice@a\.test"/);
    const bounce = await bounceOf(a, "a.test", "alice", qid);
    assert.match(bounce, /^Status: 5\.4\.6$/m);
    // Only the bounce is in the mailbox, not the message.
    const stored = await maildirMessages(a.dataDir, "a.test", "alice");
    assert.ok(stored.every((m) => m.includes("multipart/report")), stored.join("\n----\n"));
  });
});
