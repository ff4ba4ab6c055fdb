/**
 * The pre-delivery-attempt hook's input and actions end to end, as
 * GreenArrow's reference describes the hook: swaks submits with AUTH over
 * STARTTLS, Postern resolves MX records on a loopback DNS server and
 * delivers to real SMTP receivers on 127.0.0.20-24, which record the EHLO
 * name, source address and envelope of each transaction.
 *
 * Covered: the hook's input keys and values; each action (normal, pause,
 * dump, new_mtaid, new_config, deliver_as_if_to_domain); an exception, an
 * invalid result and an unknown virtual MTA as temporary failures with the
 * reference's status text and a line in the hook's own log, which SIGHUP
 * reopens for logrotate. The hook's state, reloads and other failures are
 * in outbound_hooks_state_test.ts; routes without a hook in
 * outbound_vmta_routes_test.ts.
 */

import assert from "node:assert/strict";
import { readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  outboundBaseYaml,
  type Server,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";
import {
  delivery,
  HOOK_ERROR,
  hookLogLine,
  messageFor,
  queued,
  re,
  readHookLog,
  seenBy,
  submitter,
} from "./outbound_hooks_fixtures.ts";

/**
 * The test's hook for the actions: it logs its input, then acts by the
 * recipient's local part. The failures happen on the first attempt only,
 * so that each message is delivered by its retry.
 */
const ACTIONS_HOOK = `
export default function (input, state) {
  console.error(JSON.stringify(input));
  const first = input.is_first_attempt === 1;
  const normal = { action: "normal" };
  switch (input.recipient.split("@")[0]) {
    case "pause":
      return first ? { action: "pause", message: "Not going to deliver this message right now." } : normal;
    case "dump":
      return { action: "dump", message: "This message blocked by policy. (#5.7.1)" };
    case "flip":
      // Dumped on the first attempt; let through if it were ever asked again.
      return first ? { action: "dump", message: "Flipped off by policy. (#5.7.1)" } : normal;
    case "vmta":
      return { action: "new_mtaid", new_mtaid: "fast" };
    case "sender":
      return { action: "new_config", new_sender: "bounces@example.test" };
    case "both":
      return { action: "new_config", new_mtaid: "fast", new_sender: "list-bounces@example.test" };
    case "asif":
      return { action: "normal", deliver_as_if_to_domain: "As-If.test" };
    case "throw":
      if (first) throw new Error("Illegal division by zero");
      return normal;
    case "invalid":
      return first ? { action: "explode", new_mtaid: "fast" } : normal;
    case "forge":
      // A key that the validation error quotes, with a log line of its own inside.
      return first
        ? { action: "normal", ["x\\n2099-01-01T00:00:00.000Z error in pre_delivery_attempt_hook: msguid=[FORGED], recipient=[victim@example.com], error: forged"]: 1 }
        : normal;
    case "nosuch":
      return first ? { action: "new_mtaid", new_mtaid: "nosuch" } : normal;
    default:
      return normal;
  }
}
`;

describe("pre-delivery-attempt hook: input and actions", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission = 0;
  let mx: SmtpReceiver;
  let other: SmtpReceiver;
  const submit = submitter(() => submission);
  const bounces = () =>
    maildirMessages(server.dataDir, "example.test", "alice").then((ms) =>
      ms.filter((m) => m.includes("multipart/report"))
    );

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    mx = await SmtpReceiver.start({ host: "127.0.0.20", port });
    other = await SmtpReceiver.start({ host: "127.0.0.24", port });
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "routed.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.20"] },
      "other.test": { MX: [{ priority: 10, exchange: "mx.other.test" }] },
      "mx.other.test": { A: ["127.0.0.24"] },
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
        "    fast: {bind: 127.0.0.21, ehlo: fast.example.test}",
        "    asif: {bind: 127.0.0.22, ehlo: asif.example.test}",
        "    routed: {bind: 127.0.0.23, ehlo: routed.example.test}",
        "  routes:",
        "    - {recipient_domain: as-if.test, mta: asif}",
        "    - {recipient_domain: routed.test, mta: routed}",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
      "domains/example.test/aliases": "list: flip@remote.test, pause@remote.test\n",
      "hooks/pre-delivery-attempt.ts": ACTIONS_HOOK,
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([mx.close(), other.close()]);
    await dns.close();
  });

  it("passes every key of the input with its value; is_first_attempt is 0 on the retry after a 4xx", async () => {
    let refusals = 0;
    mx.behaviour.rcptTo = (to) =>
      to === "input@remote.test" && refusals++ === 0
        ? { code: 451, text: "4.7.1 Greylisted, try again" }
        : undefined;
    const submitted = Date.now() / 1000;
    const id = queued(
      await submit(["input@remote.test", "input@routed.test"], [
        "--add-header",
        "X-SendID: camp-42",
        "--add-header",
        "X-ListID: list-9",
      ]),
    );
    await server.waitForLog(delivery(id, "input@remote.test", "deferred", ".*Greylisted"));
    await server.waitForLog(delivery(id, "input@remote.test", "sent"), 20_000);
    await server.waitForLog(delivery(id, "input@routed.test", "sent"));
    mx.behaviour = {};
    const inputs = await eventually(
      async () => {
        const all = (await readHookLog(server)).split("\n").flatMap((line) => {
          const json = /^\S+ pid=\d+ (\{.*\})$/.exec(line)?.[1];
          if (json === undefined) return [];
          const input = JSON.parse(json) as Record<string, unknown>;
          return input["msguid"] === id ? [input] : [];
        });
        return all.length >= 3 ? all : undefined;
      },
      5_000,
      "three calls of the hook in its log",
    );
    const keys = [
      "injtime",
      "is_first_attempt",
      "listid",
      "msguid",
      "mtaid",
      "mtaid_exists",
      "recipient",
      "sender",
      "sendid",
    ];
    for (const input of inputs) {
      assert.deepEqual(Object.keys(input).sort(), keys);
      assert.equal(input["sendid"], "camp-42");
      assert.equal(input["listid"], "list-9");
      assert.equal(input["sender"], "alice@example.test");
      assert.equal(input["mtaid_exists"], 1);
      const injtime = input["injtime"];
      assert.ok(
        typeof injtime === "number" && Number.isInteger(injtime) &&
          Math.abs(injtime - submitted) < 5,
        `injtime ${injtime} is near ${submitted}`,
      );
    }
    const remote = inputs.filter((i) => i["recipient"] === "input@remote.test");
    assert.deepEqual(remote.map((i) => [i["mtaid"], i["is_first_attempt"]]), [
      ["default", 1],
      ["default", 0],
    ]);
    const routed = inputs.filter((i) => i["recipient"] === "input@routed.test");
    assert.deepEqual(routed.map((i) => [i["mtaid"], i["is_first_attempt"]]), [["routed", 1]]);
    // The hook leaves both as planned: the route picks the virtual MTA.
    assert.deepEqual(seenBy(mx, await messageFor(mx, "input@routed.test")), {
      ehlo: "routed.example.test",
      from: "127.0.0.23",
    });
    assert.equal(seenBy(mx, await messageFor(mx, "input@remote.test")).ehlo, "mail.example.test");
  });

  it("pause defers the attempt with the hook's message; the retry delivers", async () => {
    const id = queued(await submit(["pause@remote.test"]));
    const deferred = await server.waitForLog(delivery(id, "pause@remote.test", "deferred"));
    assert.match(deferred, /error="Not going to deliver this message right now\."/);
    assert.equal(mx.messages.filter((m) => m.to.includes("pause@remote.test")).length, 0);
    await server.waitForLog(delivery(id, "pause@remote.test", "sent"), 15_000);
    await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1 failed=0`));
    assert.equal(mx.messages.filter((m) => m.to.includes("pause@remote.test")).length, 1);
  });

  it("dump fails the recipient and bounces it to the sender with the hook's message", async () => {
    const before = (await bounces()).length;
    const id = queued(await submit(["dump@remote.test", "kept@remote.test"]));
    const failed = await server.waitForLog(delivery(id, "dump@remote.test", "failed"));
    assert.match(failed, /This message blocked by policy\. \(#5\.7\.1\)/);
    await server.waitForLog(new RegExp(`qid=${id} event=dsn kind=failed`));
    await server.waitForLog(new RegExp(`qid=${id} event=completed sent=1 failed=1`));
    const report = await eventually(
      async () => {
        const all = await bounces();
        return all.length > before ? all.find((m) => m.includes("dump@remote.test")) : undefined;
      },
      15_000,
      "the bounce in alice's mailbox",
    );
    assert.match(report, /Final-Recipient: rfc822; ?dump@remote\.test/);
    assert.match(report, /Action: failed/);
    assert.match(report, /Status: 5\.7\.1/);
    assert.match(report, /This message blocked by policy/);
    assert.doesNotMatch(report, /Final-Recipient: rfc822; ?kept@remote\.test/);
    assert.ok(!mx.messages.some((m) => m.to.includes("dump@remote.test")), "nothing delivered");
    assert.deepEqual((await messageFor(mx, "kept@remote.test")).to, ["kept@remote.test"]);
  });

  it("dump of an alias's remote target is final: never attempted again, bounced once the rest of the alias is delivered", async () => {
    const before = (await bounces()).length;
    const id = queued(await submit(["list@example.test"]));
    // The first attempt dumps flip@ and pauses pause@: the alias waits.
    const deferred = await server.waitForLog(delivery(id, "list@example.test", "deferred"));
    assert.match(deferred, /Flipped off by policy/);
    // The retry delivers pause@ and does not ask about flip@ again.
    const failed = await server.waitForLog(delivery(id, "list@example.test", "failed"), 15_000);
    assert.match(failed, /Flipped off by policy\. \(#5\.7\.1\)/);
    await server.waitForLog(new RegExp(`qid=${id} event=dsn kind=failed`));
    await server.waitForLog(new RegExp(`qid=${id} event=completed sent=0 failed=1`));
    assert.deepEqual((await messageFor(mx, "pause@remote.test")).to, ["pause@remote.test"]);
    assert.ok(!mx.messages.some((m) => m.to.includes("flip@remote.test")), "flip@ got nothing");
    const asked = (await readHookLog(server)).split("\n").filter((l) =>
      l.includes(`"msguid":"${id}"`) && l.includes(`"recipient":"flip@remote.test"`)
    );
    assert.equal(asked.length, 1, "the hook was asked about flip@ once");
    const report = await eventually(
      async () => {
        const all = await bounces();
        return all.length > before ? all.find((m) => m.includes("Flipped off")) : undefined;
      },
      15_000,
      "the bounce in alice's mailbox",
    );
    assert.match(report, /Final-Recipient: rfc822; ?list@example\.test/);
    assert.match(report, /Action: failed/);
    assert.match(report, /Status: 5\.7\.1/);
  });

  it("new_mtaid delivers through that virtual MTA: its EHLO name and source address", async () => {
    const id = queued(await submit(["vmta@remote.test"]));
    await server.waitForLog(delivery(id, "vmta@remote.test", "sent"));
    const got = await messageFor(mx, "vmta@remote.test");
    assert.deepEqual(seenBy(mx, got), { ehlo: "fast.example.test", from: "127.0.0.21" });
    assert.equal(got.from, "alice@example.test");
  });

  it("new_config replaces the envelope sender, and with new_mtaid the virtual MTA too", async () => {
    const id = queued(await submit(["sender@remote.test", "both@remote.test"]));
    await server.waitForLog(delivery(id, "sender@remote.test", "sent"));
    await server.waitForLog(delivery(id, "both@remote.test", "sent"));
    const sender = await messageFor(mx, "sender@remote.test");
    assert.equal(sender.from, "bounces@example.test");
    assert.deepEqual(sender.to, ["sender@remote.test"]);
    assert.equal(seenBy(mx, sender).ehlo, "mail.example.test");
    const both = await messageFor(mx, "both@remote.test");
    assert.equal(both.from, "list-bounces@example.test");
    assert.deepEqual(both.to, ["both@remote.test"]);
    assert.deepEqual(seenBy(mx, both), { ehlo: "fast.example.test", from: "127.0.0.21" });
  });

  it("deliver_as_if_to_domain routes by that domain, and the mail still goes to the real MX", async () => {
    const id = queued(await submit(["asif@remote.test"]));
    await server.waitForLog(delivery(id, "asif@remote.test", "sent"));
    const got = await messageFor(mx, "asif@remote.test");
    assert.deepEqual(seenBy(mx, got), { ehlo: "asif.example.test", from: "127.0.0.22" });
  });

  it("deliver_as_if_to_domain does not send another domain's mail over the first one's connection", async () => {
    // Two real domains routed as if to one: the connection to the first
    // domain's MX, idle after its message, must not carry the second's.
    const first = queued(await submit(["asif@remote.test"]));
    await server.waitForLog(delivery(first, "asif@remote.test", "sent"));
    const second = queued(await submit(["asif@other.test"]));
    const sent = await server.waitForLog(delivery(second, "asif@other.test", "sent"));
    assert.ok(
      !mx.messages.some((m) => m.to.includes("asif@other.test")),
      `mail to other.test reached remote.test's MX (127.0.0.20): ${sent}`,
    );
    const got = await messageFor(other, "asif@other.test", 5_000);
    assert.deepEqual(seenBy(other, got), { ehlo: "asif.example.test", from: "127.0.0.22" });
  });

  it("an exception in the hook is a temporary failure, logged with msguid, recipient and error", async () => {
    const id = queued(await submit(["throw@remote.test"]));
    const deferred = await server.waitForLog(delivery(id, "throw@remote.test", "deferred"));
    assert.match(deferred, new RegExp(`error="${re(HOOK_ERROR)}"`));
    const line = await hookLogLine(server, new RegExp(`msguid=\\[${id}\\]`));
    assert.match(
      line,
      new RegExp(
        `error in pre_delivery_attempt_hook: msguid=\\[${id}\\], ` +
          `recipient=\\[throw@remote\\.test\\], error: .*Illegal division by zero`,
      ),
    );
    assert.match(
      server.stderr(),
      new RegExp(`level=warn .*pre-delivery-attempt hook error.*msguid=\\[${id}\\]`),
    );
    await server.waitForLog(delivery(id, "throw@remote.test", "sent"), 15_000);
  });

  it("an invalid result is a temporary failure, logged with what is wrong", async () => {
    const id = queued(await submit(["invalid@remote.test"]));
    const deferred = await server.waitForLog(delivery(id, "invalid@remote.test", "deferred"));
    assert.match(deferred, new RegExp(`error="${re(HOOK_ERROR)}"`));
    const line = await hookLogLine(server, new RegExp(`msguid=\\[${id}\\]`));
    assert.match(line, /recipient=\[invalid@remote\.test\], error: .*invalid/i);
    await server.waitForLog(delivery(id, "invalid@remote.test", "sent"), 15_000);
    // The invalid result named "fast": it was not used.
    assert.equal(seenBy(mx, await messageFor(mx, "invalid@remote.test")).ehlo, "mail.example.test");
  });

  it("an invalid result cannot write a line of its own into the log", async () => {
    const id = queued(await submit(["forge@remote.test"]));
    await server.waitForLog(delivery(id, "forge@remote.test", "deferred"));
    const line = await hookLogLine(server, new RegExp(`msguid=\\[${id}\\]`));
    assert.match(
      line,
      /recipient=\[forge@remote\.test\], error: invalid return value: .*x\\x0a2099/,
    );
    const forged = (await readHookLog(server)).split("\n").filter((l) => l.includes("FORGED"));
    // The forged text stays inside the one line of this error.
    assert.deepEqual(forged, [line]);
    await server.waitForLog(delivery(id, "forge@remote.test", "sent"), 15_000);
  });

  it("opens its log again on SIGHUP, after logrotate renamed it", async () => {
    const file = join(server.dataDir, "log", "pre-delivery-attempt.log");
    await readHookLog(server).then((text) => assert.notEqual(text, "", "the hook has logged"));
    await rename(file, `${file}.1`);
    // process.kill, not child.kill: under Deno, child.kill sends one signal
    // per child at most, and the harness could not stop the server after it.
    process.kill(server.child.pid!, "SIGHUP");
    // The hook prints each input it gets; once the server has reopened the
    // file by name, the next attempt's line is in the new file only.
    let n = 0;
    const rcpt = await eventually(
      async () => {
        const to = `rotated${n++}@remote.test`;
        const id = queued(await submit([to]));
        await server.waitForLog(delivery(id, to, "sent"), 15_000);
        return (await readHookLog(server)).includes(to) ? to : undefined;
      },
      20_000,
      "a hook line in the new log file",
    );
    assert.ok(!(await readFile(`${file}.1`, "utf8")).includes(rcpt));
    assert.equal(server.child.exitCode, null, "SIGHUP does not end the server");
  });

  it("new_mtaid naming a virtual MTA that does not exist is a temporary failure", async () => {
    const id = queued(await submit(["nosuch@remote.test"]));
    const deferred = await server.waitForLog(delivery(id, "nosuch@remote.test", "deferred"));
    assert.match(deferred, new RegExp(`error="${re(HOOK_ERROR)}"`));
    const line = await hookLogLine(server, new RegExp(`msguid=\\[${id}\\]`));
    assert.match(line, /recipient=\[nosuch@remote\.test\], error: .*nosuch/);
    await server.waitForLog(delivery(id, "nosuch@remote.test", "sent"), 15_000);
  });
});
