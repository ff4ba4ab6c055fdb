/**
 * The pre-delivery-attempt hook and virtual MTAs end to end, as
 * GreenArrow's reference describes the hook: swaks submits with AUTH over
 * STARTTLS, Postern resolves MX records on a loopback DNS server and
 * delivers to real SMTP receivers on 127.0.0.20-29, which record the EHLO
 * name, source address and envelope of each transaction.
 *
 * Covered: the hook's input keys and values; one state object kept across
 * calls and replaced when the hook file changes; each action (normal,
 * pause, dump, new_mtaid, new_config, deliver_as_if_to_domain); every
 * failure (exception, invalid result, timeout, a file that does not load,
 * an unknown virtual MTA) as a temporary failure with the reference's
 * status text and a line in the hook's own log, which SIGHUP reopens for
 * logrotate; and routes by sender and
 * recipient domain without any hook.
 */

import assert from "node:assert/strict";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { type SeenMessage, SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  outboundBaseYaml,
  queuedId,
  type RunResult,
  type Server,
  startServer,
  submitMail,
  tempDir,
  writeTree,
} from "./harness.ts";

/** The status text of every failure of the hook, from the reference. */
const HOOK_ERROR = "Error in pre_delivery_attempt_hook (see logfile)";

/** A submitter for `user` (password `pw-<local part>-1`) on a submission port. */
function submitter(port: () => number, user = "alice@example.test") {
  const login = { user, password: `pw-${user.split("@")[0]}-1` };
  return (to: string[], extra: string[] = []): Promise<RunResult> =>
    submitMail(port(), login, user, to, extra);
}

/** The queue ID swaks saw in the final reply. */
const queued = queuedId;

/** Escapes text for use in a RegExp. */
function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A mail log line for one recipient's attempt. */
function delivery(qid: string, rcpt: string, result: string, rest = ""): RegExp {
  return new RegExp(`qid=${qid} event=delivery to=<${re(rcpt)}> result=${result}${rest}`);
}

/** The hook's own log. */
function readHookLog(server: Server): Promise<string> {
  return readFile(join(server.dataDir, "log", "pre-delivery-attempt.log"), "utf8").catch(() => "");
}

/** Waits until the hook's log has a line matching `match`, and returns it. */
function hookLogLine(server: Server, match: RegExp, timeoutMs = 10_000): Promise<string> {
  return eventually(
    async () => (await readHookLog(server)).split("\n").find((l) => match.test(l)),
    timeoutMs,
    `a line matching ${match} in the hook's log`,
  );
}

/** The connection a message came over: its EHLO name and source address. */
function seenBy(receiver: SmtpReceiver, message: SeenMessage): { ehlo: string; from: string } {
  const connection = receiver.connections.find((c) => c.id === message.connection);
  assert.ok(connection, "the receiver recorded the connection");
  return { ehlo: connection.ehlo, from: connection.remoteAddress.replace(/^::ffff:/, "") };
}

/** The message a receiver got for `rcpt`, once it has arrived. */
function messageFor(
  receiver: SmtpReceiver,
  rcpt: string,
  timeoutMs = 15_000,
): Promise<SeenMessage> {
  return eventually(
    () => Promise.resolve(receiver.messages.find((m) => m.to.includes(rcpt))),
    timeoutMs,
    `the message to ${rcpt}`,
  );
}

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

/** A hook that counts its calls in its state and logs the count. */
const counter = (tag: string) => `
export default function (input, state) {
  state.count = (typeof state.count === "number" ? state.count : 0) + 1;
  console.error("${tag} count=" + state.count + " rcpt=" + input.recipient);
  return { action: "normal" };
}
`;

describe("pre-delivery-attempt hook: state, reloads and failures", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission = 0;
  let mx: SmtpReceiver;
  const submit = submitter(() => submission);
  const hookFile = () => join(server.configDir, "hooks", "pre-delivery-attempt.ts");
  const loads = () =>
    server.stderr().split("\n").filter((l) =>
      l.includes('msg="hook loaded"') && l.includes("hook=pre-delivery-attempt")
    ).length;
  /**
   * Rewrites the hook and waits until the runner has loaded it again (the
   * event; how soon it comes is for the benchmarks, so the wait is long).
   */
  const replaceHook = async (source: string) => {
    const before = loads();
    await writeFile(hookFile(), source);
    await eventually(
      () => Promise.resolve(loads() > before ? true : undefined),
      30_000,
      "the hook to be loaded again",
    );
  };
  /** The counts the hook logged with `tag`, in order. */
  const counts = async (tag: string) =>
    [...(await readHookLog(server)).matchAll(new RegExp(`${tag} count=(\\d+)`, "g"))].map((m) =>
      Number(m[1])
    );
  const deliverOne = async (rcpt: string) => {
    const id = queued(await submit([rcpt]));
    await server.waitForLog(delivery(id, rcpt, "sent"));
    return id;
  };

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    mx = await SmtpReceiver.start({ host: "127.0.0.25", port });
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.25"] },
    });
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mail.example.test",
        "submission:",
        `  listen: ["127.0.0.1:${submission}"]`,
        "dns:",
        `  servers: ["127.0.0.1:${dns.port}"]`,
        "  timeout: 2s",
        "delivery:",
        "  retry_initial: 1s",
        "  retry_max: 1s",
        "outbound:",
        `  port: ${port}`,
        "  connect_timeout: 2s",
        "  mta_sts: false",
        "hooks:",
        "  pre_delivery_attempt:",
        "    timeout: 1s",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("pw-alice-1")}\n`,
      "hooks/pre-delivery-attempt.ts": counter("v1"),
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await mx.close();
    await dns.close();
  });

  it("keeps one state object across calls", async () => {
    await deliverOne("s1@remote.test");
    await deliverOne("s2@remote.test");
    await deliverOne("s3@remote.test");
    assert.deepEqual(
      await eventually(async () => {
        const seen = await counts("v1");
        return seen.length >= 3 ? seen : undefined;
      }, 5_000),
      [1, 2, 3],
    );
  });

  it("starts with a fresh state after a change to the hook file", async () => {
    await replaceHook(counter("v2"));
    await deliverOne("s4@remote.test");
    await deliverOne("s5@remote.test");
    assert.deepEqual(
      await eventually(async () => {
        const seen = await counts("v2");
        return seen.length >= 2 ? seen : undefined;
      }, 5_000),
      [1, 2],
    );
    assert.deepEqual(await counts("v1"), [1, 2, 3], "the old hook was not called again");
  });

  it("a hook that does not answer within the timeout is a temporary failure", async () => {
    await replaceHook(`
export default async function (input) {
  if (input.is_first_attempt === 1) await new Promise(() => {});
  return { action: "normal" };
}
`);
    const started = Date.now();
    const id = queued(await submit(["hang@remote.test"]));
    const deferred = await server.waitForLog(delivery(id, "hang@remote.test", "deferred"));
    assert.match(deferred, new RegExp(`error="${re(HOOK_ERROR)}"`));
    assert.ok(Date.now() - started >= 900, "deferred before the 1 s timeout");
    const line = await hookLogLine(server, new RegExp(`msguid=\\[${id}\\]`));
    assert.match(line, /recipient=\[hang@remote\.test\], error: .*timed out/);
    assert.match(server.stderr(), /hook timed out.*hook=pre-delivery-attempt/);
    // The retry (not a first attempt) gets an answer from a fresh worker.
    await server.waitForLog(delivery(id, "hang@remote.test", "sent"), 15_000);
  });

  it("a hook that does not load temp-fails every attempt until it is fixed; the next retry delivers", async () => {
    // deno's report of the syntax error quotes line 2, secret and all.
    await replaceHook(
      "const TOKEN = 'tok_LIVE_canary';\nexport default function (input, state) {{{ syntax error\n",
    );
    const id = queued(await submit(["broken@remote.test"]));
    const deferrals = () =>
      server.mailLog.filter((l) => delivery(id, "broken@remote.test", "deferred").test(l));
    await eventually(
      () => Promise.resolve(deferrals().length >= 3 ? true : undefined),
      10_000,
      "three deferred attempts",
    );
    for (const line of deferrals()) assert.match(line, new RegExp(`error="${re(HOOK_ERROR)}"`));
    assert.match(server.stderr(), /hook cannot be loaded.*hook=pre-delivery-attempt/);
    // The reference logs a hook that does not load as such (once per
    // second), not per attempt.
    const line = await hookLogLine(server, /error loading pre_delivery_attempt_hook: /);
    assert.doesNotMatch(line, /msguid=/);
    // Where, as the reference's example says it, and nothing of the source.
    assert.match(line, / at file:\/\/\/\S+\/hooks\/pre-delivery-attempt\.ts:2:\d+$/);
    assert.doesNotMatch(await readHookLog(server), /tok_LIVE_canary/);
    assert.equal(mx.messages.filter((m) => m.to.includes("broken@remote.test")).length, 0);
    await replaceHook(counter("v3"));
    // Delivered by the next retry: at most one attempt, one that had asked
    // the broken hook before the fixed one was loaded, still fails.
    const failedBefore = deferrals().length;
    await server.waitForLog(delivery(id, "broken@remote.test", "sent"), 15_000);
    assert.ok(
      deferrals().length <= failedBefore + 1,
      `${deferrals().length - failedBefore} more failed attempts after the fix was loaded`,
    );
  });

  it("logs a load error about once a second, however many attempts it fails", async () => {
    await replaceHook("export default function (input, state) {{{ syntax error\n");
    const rcpts = ["m1", "m2", "m3", "m4", "m5", "m6"].map((l) => `${l}@remote.test`);
    const logBefore = (await readHookLog(server)).split("\n").length - 1;
    const stderrBefore = server.stderr().split("\n").length - 1;
    const started = Date.now();
    const id = queued(await submit(rcpts));
    const attempts = () =>
      server.mailLog.filter((l) => new RegExp(`qid=${id} event=delivery .*result=deferred`).test(l))
        .length;
    try {
      // Three attempts of six recipients: eighteen failed calls.
      await eventually(
        () => Promise.resolve(attempts() >= 18 ? true : undefined),
        15_000,
        "three attempts",
      );
      const seconds = (Date.now() - started) / 1000;
      const appLines = server.stderr().split("\n").slice(stderrBefore).filter((l) =>
        l.includes("hook cannot be loaded")
      );
      assert.ok(
        appLines.length <= Math.ceil(seconds) + 1,
        `${appLines.length} load errors in the application log in ${seconds} s`,
      );
      const hookLines = (await readHookLog(server)).split("\n").slice(logBefore).filter((l) =>
        l.includes("error loading pre_delivery_attempt_hook")
      );
      assert.ok(hookLines.length >= 1, "the load error is in the hook's log");
      assert.ok(
        hookLines.length <= Math.ceil(seconds) + 1,
        `${hookLines.length} load errors in the hook's log in ${seconds} s:\n` +
          hookLines.slice(0, 8).join("\n"),
      );
    } finally {
      await replaceHook(counter("v4"));
      await server.waitForLog(new RegExp(`qid=${id} event=completed sent=6 failed=0`), 10_000);
    }
  });

  it("keeps its state across a thrown error, an unrelated reload and SIGHUP; starts afresh after a crash, a timeout and a change to its settings", async () => {
    // As the README says: state is lost exactly when the worker is replaced.
    await replaceHook(`
export default async function (input, state) {
  state.count = (typeof state.count === "number" ? state.count : 0) + 1;
  console.error("v5 count=" + state.count + " rcpt=" + input.recipient);
  if (input.is_first_attempt === 1) {
    const local = input.recipient.split("@")[0];
    if (local === "throw") throw new Error("thrown on purpose");
    if (local === "crash") Deno.exit(1);
    if (local === "hang") await new Promise(() => {});
  }
  return { action: "normal" };
}
`);
    const reloads = () =>
      server.stderr().split("\n").filter((l) => /msg="policy reloaded"/.test(l));
    /** Changes postern.yaml (or signals) and waits for the reload it causes. */
    const reload = async (change: () => Promise<void>) => {
      const before = reloads().length;
      await change();
      await eventually(
        () => Promise.resolve(reloads().length > before ? true : undefined),
        10_000,
        "the reload",
      );
    };
    const yaml = join(server.configDir, "postern.yaml");
    const edit = async (from: string, to: string) => {
      const text = await readFile(yaml, "utf8");
      assert.ok(text.includes(from), `postern.yaml has ${from}`);
      await writeFile(yaml, text.replace(from, to));
    };
    await deliverOne("k1@remote.test"); // 1
    await deliverOne("throw@remote.test"); // 2 throws; the retry is 3
    await reload(() => edit("retry_max: 1s", "retry_max: 2s"));
    await deliverOne("k2@remote.test"); // 4
    await reload(() => Promise.resolve(void process.kill(server.child.pid!, "SIGHUP")));
    await deliverOne("k3@remote.test"); // 5
    await deliverOne("crash@remote.test"); // 6 exits; the retry is 1 in a new worker
    await deliverOne("k4@remote.test"); // 2
    await deliverOne("hang@remote.test"); // 3 times out; the retry is 1 in a new worker
    await deliverOne("k5@remote.test"); // 2
    const before = loads();
    await edit("    timeout: 1s\n", "    timeout: 2s\n");
    await eventually(
      () => Promise.resolve(loads() > before ? true : undefined),
      10_000,
      "the hook to be loaded again with its new settings",
    );
    await deliverOne("k6@remote.test"); // 1
    // The hook's own lines (a crash's error line quotes its last ones too).
    const seen = async () =>
      [...(await readHookLog(server)).matchAll(/ pid=\d+ v5 count=(\d+)/g)].map((m) =>
        Number(m[1])
      );
    assert.deepEqual(
      await eventually(async () => {
        const all = await seen();
        return all.length >= 12 ? all : undefined;
      }, 5_000),
      [1, 2, 3, 4, 5, 6, 1, 2, 3, 1, 2, 1],
    );
  });
});

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
