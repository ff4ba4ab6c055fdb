/**
 * The post-data module hook end to end: headers added at the top, 5xx and
 * 4xx with the hook's text, failures of every kind as 4xx, the message
 * streamed to the hook, state kept across calls and reset by a change to
 * the file, a syntax error failing every call until it is fixed, and
 * `postern hook run`.
 */

import assert from "node:assert/strict";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  posternCommand,
  replies,
  run,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

/** The hook the tests start with; rewritten by some tests. */
const HOOK = `
let calls = 0;
export default async function (input) {
  calls++;
  const text = await new Response(input.message).text();
  if (text.includes("PLEASE-REJECT")) return { action: "reject", message: "Rejected by policy\\nsecond line" };
  if (text.includes("PLEASE-DEFER")) return { action: "defer", message: "Try later, busy" };
  if (text.includes("PLEASE-THROW")) throw new Error("boom");
  if (text.includes("PLEASE-BADSHAPE")) return { action: "maybe" };
  if (text.includes("PLEASE-LOOP")) return { action: "accept", headers: ["Delivered-To: bob@example.test"] };
  if (text.includes("PLEASE-RECORD")) return { action: "accept", headers: { "X-One": "1", "X-Two": "2" } };
  if (text.includes("PLEASE-C1-RECORD")) return { action: "accept", headers: { "X-C3": "a\u009bInjected", "X-Ok": "3" } };
  if (text.includes("PLEASE-C1")) {
    return { action: "accept", headers: ["X-C1: a\u0085Injected: b", "X-C2: a\u2028Injected: b", "X-Ok: 1"] };
  }
  return {
    action: "accept",
    headers: [
      "X-Calls: " + calls,
      "X-Size: " + text.length,
      "X-Input: " + [input.mailFrom, input.rcptTo.join(" "), input.remoteAddr, input.onTls, input.fromLocalDomain, input.spfPass, input.authAs === ""].join(","),
      "not a header line",
      "X-Folded: first",
      "  second",
    ],
  };
}
`;

describe("post-data module hook", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 3s\n",
        "domains/example.test/users": "alice\nbob\n",
        "hooks/post-data.ts": HOOK,
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  async function send(body: string, extra: string[] = []) {
    const result = await swaks(server, [
      "--from",
      "carol@client.test",
      "--to",
      "alice@example.test,bob@example.test",
      "--body",
      body,
      ...extra,
    ]);
    const r = replies(result.stdout);
    return { final: r.at(-2) ?? "", all: r, stdout: result.stdout };
  }

  /** Application log lines matching `pattern` so far. */
  const logCount = (pattern: RegExp) =>
    server.stderr().split("\n").filter((l) => pattern.test(l)).length;

  async function delivered(queueId: string): Promise<string> {
    return await eventually(
      async () => {
        const messages = await maildirMessages(server.dataDir, "example.test", "alice");
        return messages.find((m) => m.includes(`id ${queueId}`));
      },
      15_000,
      `delivery of ${queueId}`,
    );
  }

  it("adds the hook's valid headers above Received and drops invalid lines", async () => {
    const { final } = await send("hello");
    const qid = final.match(/queued as (\w+)/)?.[1];
    assert.ok(qid, final);
    const message = await delivered(qid);
    const lines = message.split("\n");
    // Return-Path and Delivered-To come from local delivery, then the hook's.
    assert.equal(lines[2], "X-Calls: 1");
    assert.match(lines[3]!, /^X-Size: \d+$/);
    assert.equal(
      lines[4],
      "X-Input: carol@client.test,alice@example.test bob@example.test,127.0.0.1,false,false,false,true",
    );
    assert.equal(lines[5], "X-Folded: first");
    assert.equal(lines[6], "  second");
    assert.match(lines[7]!, /^Received: from /);
    assert.ok(!message.includes("not a header line"));
    await eventually(
      () =>
        Promise.resolve(
          server.stderr().includes('dropped="not a header line"') ? true : undefined,
        ),
      5_000,
      "the dropped line in the log",
    );
  });

  it("hands the hook the whole message as queued, Received header included", async () => {
    // Too long for one argument; swaks reads a body from a named file.
    const bodyFile = join(await tempDir("postern-body-"), "body.txt");
    await writeFile(bodyFile, ("x".repeat(70) + "\n").repeat(3_000));
    const { final } = await send(bodyFile);
    const qid = final.match(/queued as (\w+)/)?.[1];
    assert.ok(qid, final);
    const message = await delivered(qid);
    const size = Number(message.match(/^X-Size: (\d+)$/m)?.[1]);
    const received = message.slice(message.indexOf("Received: "));
    // The hook saw CRLF line endings; the Maildir copy has LF.
    const crlfLength = received.length + received.split("\n").length - 1;
    assert.equal(size, crlfLength);
  });

  it("keeps module state across calls", async () => {
    const first = await send("one");
    const second = await send("two");
    const a = await delivered(first.final.match(/queued as (\w+)/)![1]!);
    const b = await delivered(second.final.match(/queued as (\w+)/)![1]!);
    const count = (m: string) => Number(m.match(/^X-Calls: (\d+)$/m)?.[1]);
    assert.equal(count(b), count(a) + 1);
  });

  it("accepts headers given as a record", async () => {
    const { final } = await send("PLEASE-RECORD");
    const message = await delivered(final.match(/queued as (\w+)/)![1]!);
    assert.match(message, /\nX-One: 1\nX-Two: 2\nReceived: /);
  });

  it("treats a Delivered-To the hook adds as the message's own: a loop for that mailbox", async () => {
    const { final } = await send("PLEASE-LOOP");
    const qid = final.match(/queued as (\w+)/)?.[1];
    assert.ok(qid, final);
    // Local delivery refuses a mailbox the header says it delivered to
    // before (src/delivery/delivered_to.ts), even though the client's
    // header had no such field.
    await server.waitForLog(
      new RegExp(
        `qid=${qid} event=delivery to=<bob@example\\.test> result=failed ` +
          `error="mail forwarding loop for bob@example\\.test"`,
      ),
    );
    assert.match(await delivered(qid), /^Delivered-To: bob@example\.test$/m);
  });

  it("drops whole a header entry holding a C1 control, U+2028 or U+2029, logs it, keeps the rest", async () => {
    for (const [body, kept] of [["PLEASE-C1", "X-Ok: 1"], ["PLEASE-C1-RECORD", "X-Ok: 3"]]) {
      const { final } = await send(body!);
      const qid = final.match(/queued as (\w+)/)?.[1];
      assert.ok(qid, final);
      const message = await delivered(qid);
      assert.match(
        message,
        new RegExp(`\nDelivered-To: alice@example\\.test\n${kept}\nReceived: `),
      );
      assert.doesNotMatch(message, /Injected|X-C\d/);
      const logged = await eventually(
        () =>
          Promise.resolve(
            server.stderr().split("\n").find((l) =>
              l.includes(`qid=${qid}`) && l.includes("invalid header lines")
            ),
          ),
        5_000,
        "the dropped entries in the log",
      );
      // The log writes those characters as \u escapes (cf00ff3).
      assert.match(
        logged,
        body === "PLEASE-C1"
          ? /dropped="X-C1: a\\u0085Injected: b \| X-C2: a\\u2028Injected: b"/
          : /dropped="X-C3: a\\u009bInjected"/,
      );
    }
  });

  it("rejects permanently with 554 5.7.1 and the hook's text on one line", async () => {
    const { final } = await send("PLEASE-REJECT");
    assert.equal(final, "554 5.7.1 Rejected by policy second line");
    await server.waitForLog(/event=rejected.*reason=post_data_reject/);
  });

  it("defers with 451 4.3.0 and the hook's text", async () => {
    const { final } = await send("PLEASE-DEFER");
    assert.equal(final, "451 4.3.0 Try later, busy");
  });

  it("answers 451 4.3.0 when the hook throws or returns a bad result", async () => {
    const thrown = await send("PLEASE-THROW");
    assert.equal(thrown.final, "451 4.3.0 Message could not be checked, try again later");
    const bad = await send("PLEASE-BADSHAPE");
    assert.equal(bad.final, "451 4.3.0 Message could not be checked, try again later");
    assert.match(server.stderr(), /post-data hook failed.*cause="hook_error: Error: boom/);
    assert.match(server.stderr(), /post-data hook failed.*cause="bad_result: /);
    // The worker survives a thrown error: state is kept.
    const next = await send("after");
    assert.match(next.final, /^250 /);
  });

  it("refused messages are not delivered", async () => {
    await send("PLEASE-REJECT");
    await send("PLEASE-DEFER");
    const ok = await send("fine");
    await delivered(ok.final.match(/queued as (\w+)/)![1]!);
    const all = await maildirMessages(server.dataDir, "example.test", "alice");
    assert.ok(!all.some((m) => m.includes("PLEASE-REJECT") || m.includes("PLEASE-DEFER")));
  });

  it("times out a hook that does not answer, then serves the next call from a fresh worker", async () => {
    const hookPath = join(server.configDir, "hooks", "post-data.ts");
    await writeFile(
      hookPath,
      `let calls = 0;
export default async (input) => {
  calls++;
  const text = await new Response(input.message).text();
  if (text.includes("HANG")) await new Promise(() => {});
  return { action: "accept", headers: ["X-Fresh-Calls: " + calls] };
};`,
    );
    await eventually(
      async () => {
        const r = await send("probe");
        return /^250 /.test(r.final) && r.final.match(/queued as (\w+)/)
          ? await delivered(r.final.match(/queued as (\w+)/)![1]!).then((m) =>
            m.includes("X-Fresh-Calls: ") ? true : undefined
          )
          : undefined;
      },
      10_000,
      "the new hook",
    );
    const started = Date.now();
    const hung = await send("HANG");
    assert.equal(hung.final, "451 4.3.0 Message could not be checked, try again later");
    assert.ok(Date.now() - started >= 2_900, "answered before the 3 s timeout");
    const next = await send("after the hang");
    const message = await delivered(next.final.match(/queued as (\w+)/)![1]!);
    // A fresh worker, so fresh state.
    assert.match(message, /^X-Fresh-Calls: 1$/m);
  });

  it("starts fresh state after a change, however the file is written", async () => {
    const hooksDir = join(server.configDir, "hooks");
    const version = (tag: string) =>
      `let calls = 0; export default () => ({ action: "accept", headers: ["X-Version: ${tag}", "X-Calls: " + ++calls] });`;
    const sendAndRead = async () => {
      const r = await send("v");
      const m = await delivered(r.final.match(/queued as (\w+)/)![1]!);
      return {
        version: m.match(/^X-Version: (\w+)$/m)?.[1],
        calls: m.match(/^X-Calls: (\d+)$/m)?.[1],
      };
    };
    // In-place write. (How soon the change is seen is for the benchmarks.)
    await writeFile(join(hooksDir, "post-data.ts"), version("a"));
    await eventually(async () => (await sendAndRead()).version === "a" ? true : undefined);
    const a2 = await sendAndRead();
    assert.equal(a2.version, "a");
    assert.ok(Number(a2.calls) >= 2, "state kept while the file is unchanged");
    // Write to a temporary name, then rename over the hook; the next call
    // after the hook is loaded again goes to a fresh worker.
    const loaded = logCount(/msg="hook loaded" hook=post-data /);
    await writeFile(join(hooksDir, ".post-data.ts.tmp"), version("b"));
    await rename(join(hooksDir, ".post-data.ts.tmp"), join(hooksDir, "post-data.ts"));
    await eventually(
      () => Promise.resolve(logCount(/msg="hook loaded" hook=post-data /) > loaded || undefined),
      30_000,
      "the renamed hook to be loaded",
    );
    const b = await sendAndRead();
    assert.deepEqual(b, { version: "b", calls: "1" });
  });

  it("fails every call while the hook has a syntax error, logs it at most once a second, and recovers", async () => {
    const hookPath = join(server.configDir, "hooks", "post-data.ts");
    const broken = logCount(/hook cannot be loaded.*hook=post-data/);
    await writeFile(hookPath, "export default function ( {{{ syntax error");
    // The new file's worker has failed to load it (a line the server logs).
    await eventually(
      () =>
        Promise.resolve(logCount(/hook cannot be loaded.*hook=post-data/) > broken || undefined),
      30_000,
      "the syntax error to be seen",
    );
    const logBefore = server.stderr().split("\n").length;
    const finals: string[] = [];
    for (let i = 0; i < 4; i++) finals.push((await send(`broken ${i}`)).final);
    assert.deepEqual(
      finals,
      Array(4).fill("451 4.3.0 Message could not be checked, try again later"),
    );
    const newLines = server.stderr().split("\n").slice(logBefore - 1);
    const loadErrors = newLines.filter((l) => l.includes("hook cannot be loaded"));
    assert.ok(
      loadErrors.length <= 2,
      `logged ${loadErrors.length} times:\n${loadErrors.join("\n")}`,
    );
    assert.match(server.stderr(), /hook cannot be loaded.*hook=post-data/);
    await writeFile(
      hookPath,
      `export default () => ({ action: "accept", headers: ["X-Fixed: yes"] });`,
    );
    await eventually(
      async () => {
        const r = await send("fixed?");
        return /^250 /.test(r.final) ? r : undefined;
      },
      30_000,
      "the fixed hook",
    );
  });
});

describe("post-data hook without deno", () => {
  it("refuses to start when a TypeScript hook exists and deno cannot be found", async () => {
    const configDir = await tempDir("postern-config-");
    const dataDir = await tempDir("postern-data-");
    await writeFile(join(configDir, "postern.yaml"), "hooks:\n  deno: /nonexistent/deno\n");
    await mkdir(join(configDir, "hooks"));
    await writeFile(join(configDir, "hooks", "post-data.ts"), "export default () => {};");
    const [cmd, ...args] = posternCommand([
      "serve",
      "--config",
      configDir,
      "--data",
      dataDir,
      "--listen",
      "127.0.0.1:0",
    ]);
    const result = await run(cmd!, args);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /hook error/);
    assert.match(result.stderr, /\/nonexistent\/deno.*not an executable file/);
  });
});

describe("postern hook run", () => {
  it("runs a hook once in the sandbox and prints its verdict", async () => {
    const configDir = await tempDir("postern-config-");
    await mkdir(join(configDir, "hooks"));
    await writeFile(
      join(configDir, "hooks", "post-data.ts"),
      `export default async (input) => {
        const text = await new Response(input.message).text();
        let denied = "no";
        try { await Deno.readTextFile("/etc/hostname"); } catch { denied = "yes"; }
        return text.includes("bad")
          ? { action: "reject", message: "bad word" }
          : { action: "accept", headers: ["X-From: " + input.mailFrom, "X-Denied: " + denied] };
      };`,
    );
    const input = join(configDir, "input.json");
    await writeFile(
      input,
      JSON.stringify({ remoteAddr: "192.0.2.1", mailFrom: "a@b.test", rcptTo: ["c@d.test"] }),
    );
    const good = join(configDir, "good.eml");
    const bad = join(configDir, "bad.eml");
    await writeFile(good, "Subject: hi\r\n\r\nhello\r\n");
    await writeFile(bad, "Subject: hi\r\n\r\nbad\r\n");
    const hookRun = (message: string) => {
      const [cmd, ...args] = posternCommand([
        "hook",
        "run",
        "post-data",
        "--config",
        configDir,
        "--input",
        input,
        "--message",
        message,
      ]);
      return run(cmd!, args);
    };
    const accepted = await hookRun(good);
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.deepEqual(JSON.parse(accepted.stdout), {
      hook: "post-data",
      verdict: "accept",
      headers: ["X-From: a@b.test", "X-Denied: yes"],
      dropped: [],
    });
    const rejected = await hookRun(bad);
    assert.equal(rejected.code, 0);
    assert.equal(JSON.parse(rejected.stdout).reply, "554 5.7.1 bad word");
  });
});
