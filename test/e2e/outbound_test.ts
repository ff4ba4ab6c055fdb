/**
 * Outbound delivery end to end: swaks submits with AUTH over STARTTLS,
 * Postern looks up MX records on a real DNS server on loopback and
 * delivers to real SMTP servers on 127.0.0.x: preference order and
 * fallback, implicit MX, null MX, one transaction per domain, connection
 * reuse, opportunistic STARTTLS, retries on 4xx, bounces (RFC 3464) on 5xx,
 * SendID/ListID removal and DKIM signing. A retry schedule across a restart
 * and the end of the queue lifetime are in outbound_lifetime_test.ts.
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { dkimDnsRecord } from "../../src/auth/mod.ts";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  outboundBaseYaml,
  queuedId,
  run,
  type RunResult,
  type Server,
  startServer,
  submitMail,
  tempDir,
  writeTree,
} from "./harness.ts";

describe("outbound delivery", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  let mx1: SmtpReceiver;
  let mx2: SmtpReceiver;
  let implicit: SmtpReceiver;

  const alice = { user: "alice@example.test", password: "pw-alice-1" };
  const submit = (to: string[], extra: string[] = []): Promise<RunResult> =>
    submitMail(submission, alice, alice.user, to, extra);
  const queued = queuedId;
  /** A message from outside for one of our addresses, on the inbound port (no AUTH). */
  const receive = (to: string, body: string): Promise<RunResult> =>
    run("swaks", [
      "--server",
      `127.0.0.1:${server.port}`,
      "--from",
      "someone@elsewhere.test",
      "--to",
      to,
      "--body",
      body,
    ]);
  const bounces = () =>
    maildirMessages(server.dataDir, "example.test", "alice").then((ms) =>
      ms.filter((m) => m.includes("multipart/report"))
    );

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    mx1 = await SmtpReceiver.start({ host: "127.0.0.2", port, tlsName: "mx1.remote.test" });
    mx2 = await SmtpReceiver.start({ host: "127.0.0.3", port, starttls: false });
    implicit = await SmtpReceiver.start({ host: "127.0.0.4", port });
    dns = await startDnsServer({
      "remote.test": {
        MX: [{ priority: 10, exchange: "mx1.remote.test" }, {
          priority: 20,
          exchange: "mx2.remote.test",
        }],
      },
      "mx1.remote.test": { A: ["127.0.0.2"] },
      "mx2.remote.test": { A: ["127.0.0.3"] },
      // The preferred host does not answer: the next one takes the mail.
      "fallback.test": {
        MX: [{ priority: 5, exchange: "dead.fallback.test" }, {
          priority: 10,
          exchange: "mx2.remote.test",
        }],
      },
      "dead.fallback.test": { A: ["127.0.0.9"] },
      "nomx.test": { A: ["127.0.0.4"] },
      "nullmx.test": { MX: [{ priority: 0, exchange: "" }] },
    });
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
    // A key signs once its record is published (issue 16).
    const record = dkimDnsRecord("example.test", "sel1", publicKey);
    dns.zone[record.name] = { TXT: [record.strings] };
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        ...outboundBaseYaml(submission, dns.address),
        "outbound:",
        `  port: ${port}`,
        "  connect_timeout: 2s",
        "  max_connections_per_destination: 1",
        "  mta_sts: false",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
      "domains/example.test/aliases":
        "fwd: alice, fwd-target@remote.test\nteam: team-a@remote.test, team-b@nomx.test\n" +
        "away: gone@remote.test\n",
      "domains/example.test/dkim/sel1.pem": privateKey.export({ type: "pkcs8", format: "pem" })
        .toString(),
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([mx1.close(), mx2.close(), implicit.close()]);
    await dns.close();
  });

  it("delivers to the preferred MX host over STARTTLS, signed, without SendID and ListID", async () => {
    const before = mx1.messages.length;
    const id = queued(
      await submit(["bob@remote.test"], [
        "--add-header",
        "X-SendID: campaign-7",
        "--add-header",
        "X-ListID: list-3",
        "--body",
        "hello remote",
      ]),
    );
    await mx1.waitForMessages(before + 1);
    const got = mx1.messages.at(-1)!;
    assert.equal(got.from, "alice@example.test");
    assert.deepEqual(got.to, ["bob@remote.test"]);
    assert.equal(got.secure, true, "opportunistic STARTTLS was used");
    assert.match(got.data, /hello remote/);
    assert.doesNotMatch(got.data, /X-SendID|X-ListID/i);
    assert.match(got.data, /^DKIM-Signature: .*d=example\.test/m);
    assert.match(got.data, /s=sel1/);
    const seen = mx1.connections.find((c) => c.id === got.connection)!;
    assert.equal(seen.ehlo, "mail.example.test");
    await server.waitForLog(
      new RegExp(`qid=${id} event=delivery to=<bob@remote\\.test> result=sent`),
    );
    assert.ok(
      !existsSync(join(server.dataDir, "log", "pre-delivery-attempt.log")),
      "no hook, no hook log file",
    );
  });

  it("adds the Date and Message-ID a submitted message lacks (RFC 6409 section 8)", async () => {
    const before = mx1.messages.length;
    const id = queued(
      await submit(["bare@remote.test"], [
        "--data",
        "From: alice@example.test\r\nTo: bare@remote.test\r\nSubject: bare\r\n\r\nno date\r\n",
      ]),
    );
    await mx1.waitForMessages(before + 1);
    const got = mx1.messages.at(-1)!.data;
    assert.match(got, new RegExp(`^Message-ID: <${id}@mail\\.example\\.test>\r?$`, "m"));
    assert.match(got, /^Date: \w{3}, \d{1,2} \w{3} \d{4} /m);
    assert.equal(got.match(/^Date:/gm)?.length, 1);
    // A message that has both keeps its own.
    const own = mx1.messages.slice(0, before).find((m) => /^Message-Id: </m.test(m.data));
    assert.ok(own === undefined || !own.data.includes(`@mail.example.test>`));
  });

  it("adds From from the envelope sender to a message without one, then signs (RFC 6409 section 8.1)", async () => {
    const before = mx1.messages.length;
    const result = await submit(["nofrom@remote.test"], [
      "--data",
      "To: nofrom@remote.test\r\nSubject: no from\r\n\r\nwho sent this\r\n",
    ]);
    const id = queued(result);
    await mx1.waitForMessages(before + 1);
    const got = mx1.messages.at(-1)!.data;
    assert.match(got, /^From: <alice@example\.test>\r?$/m);
    assert.equal(got.match(/^From:/gm)?.length, 1);
    assert.match(got, /^DKIM-Signature: .*d=example\.test/m);
    await server.waitForLog(
      new RegExp(`qid=${id} event=delivery to=<nofrom@remote\\.test> result=sent`),
    );
  });

  it("forwards an alias's remote target through outbound delivery, with the original sender", async () => {
    const before = mx1.messages.length;
    const id = queued(await receive("fwd@example.test", "forward me"));
    await mx1.waitForMessages(before + 1);
    const got = mx1.messages.at(-1)!;
    assert.equal(got.from, "someone@elsewhere.test");
    assert.deepEqual(got.to, ["fwd-target@remote.test"]);
    assert.match(got.data, /forward me/);
    assert.doesNotMatch(got.data, /DKIM-Signature/, "not submitted mail: not ours to sign");
    await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1 failed=0`));
    const copies = await maildirMessages(server.dataDir, "example.test", "alice");
    assert.ok(copies.some((m) => m.includes("forward me")), "the local target got its copy");
  });

  it("does not forward again to an alias's target that took the message when a sibling target deferred", async () => {
    let refused = 0;
    implicit.behaviour.rcptTo = (to) =>
      to === "team-b@nomx.test" && refused++ === 0
        ? { code: 451, text: "4.3.0 Try again later" }
        : undefined;
    try {
      const id = queued(await receive("team@example.test", "to the team"));
      await server.waitForLog(
        new RegExp(`qid=${id} event=delivery to=<team@example\\.test> result=deferred`),
      );
      await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1 failed=0`), 20_000);
      const copies = (receiver: SmtpReceiver, to: string) =>
        receiver.messages.filter((m) => m.to.includes(to) && m.data.includes("to the team")).length;
      assert.equal(copies(implicit, "team-b@nomx.test"), 1);
      assert.equal(
        copies(mx1, "team-a@remote.test"),
        1,
        "the retry did not send team-a a second copy",
      );
    } finally {
      implicit.behaviour = {};
    }
  });

  it("puts the recipients of one domain in one transaction and reuses the connection", async () => {
    const before = mx1.messages.length;
    const connectionsBefore = mx1.connections.length;
    queued(await submit(["r1@remote.test", "r2@remote.test"]));
    queued(await submit(["r3@remote.test"]));
    queued(await submit(["r4@remote.test"]));
    await mx1.waitForMessages(before + 3);
    const recent = mx1.messages.slice(before);
    assert.deepEqual(recent[0]!.to, ["r1@remote.test", "r2@remote.test"]);
    // One connection per destination at a time: later messages reuse it.
    const used = new Set(recent.map((m) => m.connection));
    assert.ok(used.size < recent.length, `connections ${used.size} for ${recent.length} messages`);
    assert.ok(mx1.connections.length - connectionsBefore <= 2);
  });

  it("falls back to the next MX host, and uses the A record when there is no MX", async () => {
    const before2 = mx2.messages.length;
    const beforeImplicit = implicit.messages.length;
    queued(await submit(["carol@fallback.test"]));
    queued(await submit(["dave@nomx.test"]));
    await mx2.waitForMessages(before2 + 1);
    await implicit.waitForMessages(beforeImplicit + 1);
    assert.deepEqual(mx2.messages.at(-1)!.to, ["carol@fallback.test"]);
    assert.equal(mx2.messages.at(-1)!.secure, false, "no STARTTLS offered: plain text");
    assert.deepEqual(implicit.messages.at(-1)!.to, ["dave@nomx.test"]);
  });

  it("retries a recipient the receiver defers (4xx) until it is accepted", async () => {
    let refusals = 0;
    mx1.behaviour.rcptTo = (to) =>
      to === "later@remote.test" && refusals++ < 2
        ? { code: 451, text: "4.7.1 Greylisted, try again" }
        : undefined;
    const before = mx1.messages.length;
    const id = queued(await submit(["later@remote.test"]));
    await server.waitForLog(
      new RegExp(`qid=${id} event=delivery to=<later@remote\\.test> result=deferred .*Greylisted`),
    );
    await mx1.waitForMessages(before + 1, 30_000);
    await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1 failed=0`));
    assert.equal(refusals, 3);
    mx1.behaviour = {};
  });

  it("bounces a recipient the receiver refuses (5xx) with an RFC 3464 report to the sender", async () => {
    mx1.behaviour.rcptTo = (to) =>
      to === "nobody@remote.test" ? { code: 550, text: "5.1.1 No such user here" } : undefined;
    const before = (await bounces()).length;
    const id = queued(await submit(["nobody@remote.test", "ok@remote.test"]));
    await server.waitForLog(new RegExp(`qid=${id} event=dsn kind=failed`));
    await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1 failed=1`));
    const report = await eventually(
      async () => {
        const all = await bounces();
        return all.length > before ? all.at(-1) : undefined;
      },
      15_000,
      "the bounce in alice's mailbox",
    );
    assert.match(report, /^Return-Path: <>/m);
    assert.match(report, /Content-Type: multipart\/report; report-type=delivery-status/);
    assert.match(report, /Final-Recipient: rfc822; ?nobody@remote\.test/);
    assert.match(report, /Action: failed/);
    assert.match(report, /Status: 5\.1\.1/);
    assert.match(report, /Remote-MTA: dns; ?mx1\.remote\.test/);
    assert.match(report, /Diagnostic-Code: smtp; ?550/);
    assert.match(report, /Content-Type: text\/rfc822-headers/);
    assert.doesNotMatch(report, /ok@remote\.test.*\n.*Action: failed/);
    mx1.behaviour = {};
  });

  it("bounces mail to a domain with a null MX (RFC 7505) at once", async () => {
    const id = queued(await submit(["x@nullmx.test"]));
    const line = await server.waitForLog(
      new RegExp(`qid=${id} event=delivery to=<x@nullmx\\.test> result=failed`),
    );
    assert.match(line, /null MX/);
    await server.waitForLog(new RegExp(`qid=${id} event=dsn kind=failed`));
    const report = await eventually(
      async () => {
        const all = await bounces();
        return all.find((m) => m.includes("x@nullmx.test"));
      },
      15_000,
      "the null-MX bounce",
    );
    assert.match(report, /Status: 5\.1\.10/);
  });

  it("never bounces a bounce: mail from the null sender that fails is logged once and dropped", async () => {
    // Accepted on port 25 from <> for an alias that forwards to a remote
    // domain whose MX refuses the recipient for good.
    mx1.behaviour.rcptTo = () => ({ code: 550, text: "5.1.1 No such user" });
    try {
      const r = await run("swaks", [
        "--server",
        `127.0.0.1:${server.port}`,
        "--from",
        "<>",
        "--to",
        "away@example.test",
        "--body",
        "a bounce from elsewhere",
      ]);
      const id = queued(r);
      await server.waitForLog(new RegExp(`qid=${id} event=completed sent=0 failed=1`), 30_000);
      const lines = server.mailLog.filter((l) => l.includes(`qid=${id} `));
      const failures = lines.filter((l) => / event=delivery .*result=failed/.test(l));
      assert.equal(failures.length, 1, lines.join("\n"));
      assert.match(failures[0]!, /550/);
      assert.ok(!lines.some((l) => / event=dsn /.test(l)), lines.join("\n"));
      // No notification was queued for anyone: no DSN envelope in the spool,
      // and the failed message itself is gone.
      const queue = join(server.dataDir, "spool", "queue");
      await eventually(
        async () => (await readdir(queue)).some((n) => n.startsWith(id)) ? undefined : true,
        10_000,
        "the message to leave the spool",
      );
      for (const name of (await readdir(queue)).filter((n) => n.endsWith(".msg"))) {
        const head = (await readFile(join(queue, name), "utf8")).split("\n", 1)[0]!;
        assert.doesNotMatch(head, /"to":\[""\]/);
      }
      assert.ok(!server.mailLog.some((l) => l.includes(`event=dsn`) && l.includes(id)));
    } finally {
      mx1.behaviour = {};
    }
  });
});
