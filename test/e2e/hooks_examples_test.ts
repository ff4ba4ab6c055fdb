/**
 * The example hooks in `hooks/examples/` work as documented when copied
 * into a configuration: the spam check talks to the host it is granted
 * (a stand-in for rspamd's HTTP API on loopback), the alias-resolve hook
 * reads its JSON file, the alias-exists hook accepts role addresses. The
 * pre-delivery-attempt examples type-check against the SDK; the blacklist
 * bounces listed recipients and reads its list again after three seconds,
 * and the SendID hook moves one send to another virtual MTA, as seen by a
 * receiving SMTP server on 127.0.0.29.
 */

import assert from "node:assert/strict";
import { appendFile, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  posternCommand,
  queuedId,
  replies,
  ROOT,
  run,
  type Server,
  startServer,
  submitMail,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

/** What the stand-in rspamd received, one entry per request. */
interface Checked {
  ip: string | undefined;
  from: string | undefined;
  body: string;
}

describe("example hooks", () => {
  let server: Server;
  let rspamd: HttpServer;
  const checked: Checked[] = [];
  before(async () => {
    rspamd = createServer(async (req: IncomingMessage, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      checked.push({ ip: req.headers["ip"] as string, from: req.headers["from"] as string, body });
      const action = body.includes("BUY NOW")
        ? "reject"
        : body.includes("maybe")
        ? "add header"
        : "no action";
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          action,
          score: action === "reject" ? 20 : action === "no action" ? 0.5 : 7,
        }),
      );
    });
    await new Promise<void>((r) => rspamd.listen(0, "127.0.0.1", r));
    const port = (rspamd.address() as AddressInfo).port;
    const example = (name: string) => readFile(join(ROOT, "hooks", "examples", name), "utf8");
    server = await startServer({
      config: {
        "postern.yaml": `hooks:\n  post_data:\n    allow:\n      net: ["127.0.0.1:${port}"]\n`,
        "domains/example.test/users": "ann\nbob\n",
        "hooks/post-data.ts": (await example("post-data.ts")).replaceAll("11333", String(port)),
        "hooks/alias-resolve.ts": await example("alias-resolve.ts"),
        "hooks/alias-resolve/aliases.json": JSON.stringify({
          "sales@example.test": ["ann@example.test", "bob@example.test"],
          "abuse@example.test": "ann",
        }),
        "hooks/alias-exists.ts": await example("alias-exists.ts"),
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await new Promise((r) => rspamd.close(r));
  });

  const send = async (to: string, body: string) =>
    replies(
      (await swaks(server, ["--from", "zed@client.test", "--to", to, "--body", body])).stdout,
    );

  it("the spam check streams the message to the granted host and acts on its verdict", async () => {
    const clean = await send("ann@example.test", "hello there");
    assert.match(clean.at(-2)!, /^250 2\.0\.0 Ok: queued as /, server.stderr());
    const spam = await send("ann@example.test", "BUY NOW cheap");
    assert.equal(spam.at(-2), "554 5.7.1 Message looks like spam (score 20.0)");
    const last = checked.at(-1)!;
    assert.equal(last.ip, "127.0.0.1");
    assert.equal(last.from, "zed@client.test");
    assert.match(last.body, /^Received: from /);
    assert.match(last.body, /BUY NOW cheap/);
    const message = await eventually(async () => {
      const all = await maildirMessages(server.dataDir, "example.test", "ann");
      return all.find((m) => m.includes("hello there"));
    });
    assert.match(message, /^X-Spam-Score: 0\.50$/m);
    assert.match(message, /^X-Spam-Flag: NO$/m);
  });

  it("alias-exists admits a role address no file lists; alias-resolve expands it from JSON", async () => {
    const role = await send("abuse@example.test", "abuse report");
    assert.equal(role.at(-2)?.slice(0, 9), "250 2.0.0", role.join("\n"));
    const unknown = await send("nobody@example.test", "x");
    assert.ok(unknown.some((l) => l.startsWith("550 5.1.1")), unknown.join("\n"));
    // sales@ is only in the hook's JSON file: not a role, so RCPT refuses it.
    const list = await send("sales@example.test", "list mail");
    assert.ok(list.some((l) => l.startsWith("550 5.1.1")), list.join("\n"));
    await eventually(async () => {
      const all = await maildirMessages(server.dataDir, "example.test", "ann");
      return all.find((m) => m.includes("abuse report"));
    });
    assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "abuse"), []);
  });

  it("the spam check defers when the spam checker is unreachable", async () => {
    await new Promise((r) => rspamd.close(r));
    rspamd.closeAllConnections?.();
    const r = await send("ann@example.test", "while rspamd is down");
    assert.equal(r.at(-2), "451 4.3.0 Spam check unavailable, try again later");
  });
});

describe("example pre-delivery-attempt hooks", () => {
  let dns: TestDnsServer;
  let server: Server;
  let mx: SmtpReceiver;
  let submission = 0;
  const example = (name: string) => readFile(join(ROOT, "hooks", "examples", name), "utf8");
  const alice = { user: "alice@example.test", password: "pw-alice-1" };
  const submit = async (to: string[], extra: string[] = []) =>
    queuedId(await submitMail(submission, alice, alice.user, to, extra));
  const outcome = (id: string, rcpt: string) =>
    server.waitForLog(new RegExp(`qid=${id} event=delivery to=<${rcpt}> result=(sent|failed)`));
  const connectionOf = (rcpt: string) =>
    eventually(
      () => {
        const message = mx.messages.find((m) => m.to.includes(rcpt));
        const seen = mx.connections.find((c) => c.id === message?.connection);
        return Promise.resolve(
          seen && { ehlo: seen.ehlo, from: seen.remoteAddress.replace(/^::ffff:/, "") },
        );
      },
      10_000,
      `the message to ${rcpt}`,
    );

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    mx = await SmtpReceiver.start({ host: "127.0.0.29", port });
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.29"] },
    });
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mail.example.test",
        "submission:",
        `  listen: ["127.0.0.1:${submission}"]`,
        "dns:",
        `  servers: ["127.0.0.1:${dns.port}"]`,
        "delivery:",
        "  retry_initial: 1s",
        "outbound:",
        `  port: ${port}`,
        "  mta_sts: false",
        "  virtual_mtas:",
        "    smtp1-3: {bind: 127.0.0.28, ehlo: smtp1-3.example.test}",
        "hooks:",
        "  pre_delivery_attempt:",
        "    allow:",
        '      read: ["recipient_blacklist.txt"]',
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
      "recipient_blacklist.txt": "  Blocked@Remote.test \n\n",
      "hooks/pre-delivery-attempt.ts": await example("pre-delivery-attempt-blacklist.ts"),
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await mx.close();
    await dns.close();
  });

  it("the blacklist bounces listed recipients and reads its file again after three seconds", async () => {
    const id = await submit(["blocked@remote.test", "fine@remote.test"]);
    const blocked = await outcome(id, "blocked@remote\\.test");
    assert.match(
      blocked,
      /result=failed .*This address is on an internal blacklist\. \(#5\.7\.1\)/,
    );
    assert.match(await outcome(id, "fine@remote\\.test"), /result=sent/);
    const bounce = await eventually(async () => {
      const all = await maildirMessages(server.dataDir, "example.test", "alice");
      return all.find((m) => m.includes("Final-Recipient: rfc822; blocked@remote.test"));
    });
    assert.match(bounce, /Status: 5\.7\.1/);
    assert.match(bounce, /internal blacklist/);
    assert.ok(!mx.messages.some((m) => m.to.includes("blocked@remote.test")));
    // A later edit of the list applies once the hook's copy is three seconds old.
    await appendFile(join(server.configDir, "recipient_blacklist.txt"), "LATER@remote.test\n");
    await new Promise((r) => setTimeout(r, 3_500));
    const later = await submit(["later@remote.test"]);
    assert.match(await outcome(later, "later@remote\\.test"), /result=failed .*internal blacklist/);
  });

  it("the SendID hook moves one send to virtual MTA smtp1-3 and logs each match", async () => {
    const loads = () => server.stderr().split("\n").filter((l) => l.includes('msg="hook loaded"'));
    const before = loads().length;
    await writeFile(
      join(server.configDir, "hooks", "pre-delivery-attempt.ts"),
      await example("pre-delivery-attempt-sendid.ts"),
    );
    await eventually(
      () => Promise.resolve(loads().length > before ? true : undefined),
      5_000,
      "the SendID hook to be loaded",
    );
    const moved = await submit(["moved@remote.test"], ["--add-header", "X-SendID: trans170101"]);
    const stayed = await submit(["stayed@remote.test"], ["--add-header", "X-SendID: news1"]);
    assert.match(await outcome(moved, "moved@remote\\.test"), /result=sent/);
    assert.match(await outcome(stayed, "stayed@remote\\.test"), /result=sent/);
    assert.deepEqual(await connectionOf("moved@remote.test"), {
      ehlo: "smtp1-3.example.test",
      from: "127.0.0.28",
    });
    assert.equal((await connectionOf("stayed@remote.test")).ehlo, "mail.example.test");
    const log = await eventually(
      async () => {
        const text = await readFile(
          join(server.dataDir, "log", "pre-delivery-attempt.log"),
          "utf8",
        ).catch(() => "");
        return text.includes("moved@remote.test") ? text : undefined;
      },
      5_000,
      "the match in the hook's log",
    );
    assert.match(
      log,
      /pre_delivery_attempt_hook: matched SendID trans170101 for moved@remote\.test/,
    );
    assert.doesNotMatch(log, /stayed@remote\.test/);
  });

  it("every pre-delivery-attempt example type-checks against the SDK with postern check", async () => {
    for (
      const name of [
        "pre-delivery-attempt.ts",
        "pre-delivery-attempt-blacklist.ts",
        "pre-delivery-attempt-sendid.ts",
      ]
    ) {
      const dir = await tempDir();
      await writeTree(dir, { "hooks/pre-delivery-attempt.ts": await example(name) });
      const [cmd, ...args] = posternCommand(["check", "--config", dir]);
      const result = await run(cmd!, args);
      await rm(dir, { recursive: true });
      assert.equal(result.code, 0, `${name}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /hooks type-check: .*pre-delivery-attempt\.ts/);
    }
  });

  it("postern hook run shows the SendID example's decision for one attempt", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      "hooks/pre-delivery-attempt.ts": await example("pre-delivery-attempt-sendid.ts"),
      "moved.json": JSON.stringify({
        sender: "a@example.test",
        recipient: "b@remote.test",
        sendid: "trans170101",
      }),
      "bad.json": JSON.stringify({ sender: "a@example.test" }),
    });
    const hookRun = (input: string) => {
      const [cmd, ...args] = posternCommand([
        "hook",
        "run",
        "pre-delivery-attempt",
        "--config",
        dir,
        "--input",
        join(dir, input),
      ]);
      return run(cmd!, args);
    };
    const moved = await hookRun("moved.json");
    const invalid = await hookRun("bad.json");
    await rm(dir, { recursive: true });
    assert.equal(moved.code, 0, moved.stderr);
    assert.deepEqual(JSON.parse(moved.stdout), {
      hook: "pre-delivery-attempt",
      recipient: "b@remote.test",
      decision: { kind: "deliver", mtaid: "smtp1-3" },
    });
    assert.equal(invalid.code, 2);
    assert.match(invalid.stdout + invalid.stderr, /invalid input: recipient/);
  });
});
