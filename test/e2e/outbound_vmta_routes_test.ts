/**
 * Virtual MTAs chosen by routes, without any hook, end to end: the default
 * virtual MTA when no route matches, a route by the recipient's domain and
 * one by the sender's domain (the first matching route wins), seen by a
 * real SMTP receiver on 127.0.0.26 as the EHLO name and source address of
 * the connection.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  freePort,
  outboundBaseYaml,
  type Server,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";
import {
  delivery,
  messageFor,
  queued,
  readHookLog,
  seenBy,
  submitter,
} from "./outbound_hooks_fixtures.ts";

describe("virtual MTAs chosen by routes, without a hook", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission = 0;
  let mx: SmtpReceiver;
  const alice = submitter(() => submission);
  const bob = submitter(() => submission, "bob@brand.test");

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    mx = await SmtpReceiver.start({ host: "127.0.0.26", port });
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "special.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.26"] },
    });
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        ...outboundBaseYaml(submission, dns.address),
        "outbound:",
        `  port: ${port}`,
        "  connect_timeout: 2s",
        "  mta_sts: false",
        "  virtual_mtas:",
        "    byrcpt: {bind: 127.0.0.27, ehlo: byrcpt.example.test}",
        "    bysender: {bind: 127.0.0.28, ehlo: bysender.example.test}",
        "  routes:",
        "    - {recipient_domain: Special.test, mta: byrcpt}",
        "    - {sender_domain: brand.test, mta: bysender}",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
      "domains/brand.test/users": `bob ${await hashPassword("pw-bob-1")}\n`,
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await mx.close();
    await dns.close();
  });

  const deliveredVia = async (id: string, rcpt: string) => {
    await server.waitForLog(delivery(id, rcpt, "sent"));
    return seenBy(mx, await messageFor(mx, rcpt));
  };

  it("uses the default virtual MTA when no route matches", async () => {
    const id = queued(await alice(["plain@remote.test"]));
    assert.equal((await deliveredVia(id, "plain@remote.test")).ehlo, "mail.example.test");
  });

  it("routes by the recipient's domain", async () => {
    const id = queued(await alice(["r@special.test"]));
    assert.deepEqual(await deliveredVia(id, "r@special.test"), {
      ehlo: "byrcpt.example.test",
      from: "127.0.0.27",
    });
  });

  it("routes by the sender's domain; the first matching route wins", async () => {
    const id = queued(await bob(["s@remote.test", "t@special.test"]));
    assert.deepEqual(await deliveredVia(id, "s@remote.test"), {
      ehlo: "bysender.example.test",
      from: "127.0.0.28",
    });
    assert.deepEqual(await deliveredVia(id, "t@special.test"), {
      ehlo: "byrcpt.example.test",
      from: "127.0.0.27",
    });
    assert.equal(await readHookLog(server), "", "no hook, nothing in the hook's log");
  });
});
