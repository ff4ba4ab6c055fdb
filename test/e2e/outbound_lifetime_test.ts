/**
 * Outbound delivery end to end over time: a retry schedule kept across a
 * restart, one delay warning to the sender, and the bounce (RFC 3464,
 * status 5.4.7) when the queue lifetime ends, against a real DNS server
 * and a real SMTP server on loopback that keeps deferring.
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  run,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";

describe("outbound delivery: lifetime and restarts", () => {
  it("keeps a retry schedule across a restart, warns the sender once, and bounces when the lifetime ends", async () => {
    const port = await freePort();
    const submission = await freePort();
    const mx = await SmtpReceiver.start({ host: "127.0.0.5", port });
    const dns = await startDnsServer({
      "slow.test": { MX: [{ priority: 10, exchange: "mx.slow.test" }] },
      "mx.slow.test": { A: ["127.0.0.5"] },
    });
    mx.behaviour.rcptTo = () => ({ code: 452, text: "4.2.2 Mailbox full" });
    const configDir = await tempDir("postern-config-");
    const dataDir = await tempDir("postern-data-");
    await writeTree(configDir, {
      "postern.yaml": [
        "submission:",
        `  listen: ["127.0.0.1:${submission}"]`,
        "dns:",
        `  servers: ["127.0.0.1:${dns.port}"]`,
        "delivery:",
        "  retry_initial: 1s",
        "  retry_max: 1s",
        "  max_queue_lifetime: 6s",
        "outbound:",
        `  port: ${port}`,
        "  mta_sts: false",
        "  delay_warning: 2s",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
    });
    let server = await startServer({ configDir, dataDir });
    try {
      const r = await run("swaks", [
        "--server",
        `127.0.0.1:${submission}`,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "pw-alice-1",
        "--from",
        "alice@example.test",
        "--to",
        "full@slow.test",
      ]);
      const id = /queued as (\w+)/.exec(r.stdout)?.[1];
      assert.ok(id, r.stdout);
      await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=deferred`));
      // The state is saved right after the log line.
      const state = await eventually(
        () =>
          readFile(join(dataDir, "spool", "queue", `${id}.state`), "utf8").then(
            JSON.parse,
            () => undefined,
          ),
        5_000,
        "the saved delivery state",
      );
      assert.equal(state.recipients[0].status, "pending");
      assert.equal(state.recipients[0].last_status, "4.2.2");
      await server.stop();
      server = await startServer({ configDir, dataDir });
      await server.waitForLog(new RegExp(`qid=${id} event=recovered pending=1`));
      const failed = await server.waitForLog(
        new RegExp(`qid=${id} event=delivery to=<full@slow\\.test> result=failed`),
        20_000,
      );
      assert.match(failed, /expired after/);
      await server.waitForLog(new RegExp(`qid=${id} event=dsn kind=failed`));
      const reports = await eventually(
        async () => {
          const all = await maildirMessages(dataDir, "example.test", "alice");
          const about = all.filter((m) => m.includes("full@slow.test"));
          return about.some((m) => m.includes("Action: failed")) ? about : undefined;
        },
        15_000,
        "the expiry bounce",
      );
      // One warning, however many attempts and restarts came between.
      const warnings = reports.filter((m) => m.includes("Action: delayed"));
      assert.equal(warnings.length, 1, "one delay warning");
      assert.match(warnings[0]!, /Subject: Delayed Mail/);
      assert.match(warnings[0]!, /Will-Retry-Until: /);
      assert.match(warnings[0]!, /Status: 4\.2\.2/);
      const report = reports.find((m) => m.includes("Action: failed"))!;
      assert.match(report, /Status: 5\.4\.7/);
      assert.match(report, /Mailbox full/);
      assert.ok(mx.messages.length === 0);
    } finally {
      await cleanup(server);
      await mx.close();
      await dns.close();
    }
  });
});
