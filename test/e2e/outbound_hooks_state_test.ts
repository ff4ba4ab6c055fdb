/**
 * The pre-delivery-attempt hook's state, reloads and failures end to end:
 * one state object kept across calls and replaced when the hook file
 * changes, kept across a thrown error, an unrelated reload and SIGHUP, and
 * started afresh after a crash, a timeout or a change to its settings; a
 * hook that does not answer in time or does not load is a temporary
 * failure, its load error logged about once a second. Swaks submits,
 * Postern delivers to a real SMTP receiver on 127.0.0.25 found through a
 * loopback DNS server.
 */

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
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
  type Server,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";
import {
  delivery,
  HOOK_ERROR,
  hookLogLine,
  queued,
  re,
  readHookLog,
  submitter,
} from "./outbound_hooks_fixtures.ts";

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
