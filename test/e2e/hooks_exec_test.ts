/**
 * Executable hooks end to end, with chasquid's exact protocol: post-data
 * gets the message on standard input and the transaction in its
 * environment, and answers with its exit status and standard output;
 * alias-resolve and alias-exists get the address as their single argument.
 * They run only when `hooks.allow_unsandboxed_exec` allows it.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  posternCommand,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

/** Set in the test's environment, which the server inherits; no hook may see it. */
const CANARY = "POSTERN_TEST_HOOK_CANARY";

/**
 * The post-data hook: saves its input and environment (as the kernel handed
 * it over, before the shell touches it) under `captures/` of its working
 * directory, then acts on the recipients.
 */
const POST_DATA = `#!/bin/sh
tag=$(printf '%s' "$RCPT_TO" | tr -c 'A-Za-z0-9' '_')
cat > "captures/$tag.eml"
tr '\\0' '\\n' < /proc/$$/environ > "captures/$tag.env"
pwd -P > "captures/$tag.cwd"
case " $RCPT_TO " in
  *" reject@example.test "*)
    echo "a line that is not the reason"
    echo "Spam detected, go away"
    exit 20 ;;
  *" defer@example.test "*)
    echo "a line that is not the reason"
    echo "Greylisted, try again later"
    exit 1 ;;
  *" slow@example.test "*)
    sleep 15
    exit 0 ;;
  *" headers@example.test "*)
    printf 'X-Hook-One: first\\n'
    printf 'this line is not a header\\n'
    printf 'X-Hook-Two: second\\n'
    printf '\\tcontinued\\n'
    printf 'Bad Name: a space in the name\\n'
    printf '  orphan continuation\\n'
    printf 'X-Hook-Three: third\\n'
    exit 0 ;;
esac
exit 0
`;

/** The alias-exists hook: knows ghost@ and piped@, records every call. */
const ALIAS_EXISTS = `#!/bin/sh
printf '%s|%s\\n' "$#" "$*" >> captures/alias-exists.calls
case "$1" in
  ghost@example.test|piped@example.test) exit 0 ;;
esac
exit 1
`;

/** The alias-resolve hook; `pipe` is the command line piped@ resolves to. */
function aliasResolve(pipe: string): string {
  return `#!/bin/sh
printf '%s|%s\\n' "$#" "$*" >> captures/alias-resolve.calls
case "$1" in
  list@example.test) echo "alice@example.test, bob" ;;
  piped@example.test) echo "| ${pipe}" ;;
  broken@example.test)
    if [ -e captures/fixed ]; then exit 0; fi
    echo "the alias database is down" >&2
    exit 3 ;;
esac
exit 0
`;
}

/** Parses `NAME=value` lines. */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const eq = line.indexOf("=");
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** The queue ID in a `250 2.0.0 Ok: queued as <id>` reply, or a failure. */
function queuedId(output: string): string {
  const accepted = replies(output).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
  assert.ok(accepted, output);
  return accepted.split(" ").at(-1)!;
}

/** The reply swaks got to its RCPT command. */
function rcptReply(output: string): string {
  const lines = output.split("\n");
  const sent = lines.findIndex((l) => / [-~]> RCPT TO:/.test(l));
  assert.ok(sent >= 0, output);
  const answer = lines.slice(sent + 1).find((l) => /^<(-|~|\*\*|~\*\*) /.test(l));
  return answer ? answer.replace(/^<\S*\s+/, "") : "";
}

/** The reply to the end of DATA: the last reply before QUIT's 221. */
function dataReply(output: string): string {
  const lines = replies(output).filter((l) => !l.startsWith("221 "));
  return lines.at(-1) ?? "";
}

/** Runs a command that must end by itself; a command killed by the limit fails the test. */
function runBounded(
  cmd: string,
  args: string[],
  limitMs: number,
): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

describe("executable hooks (chasquid's protocol)", () => {
  let server: Server;
  let scratch: string;
  let pipeOut: string;
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    scratch = await tempDir("postern-exec-hooks-");
    pipeOut = join(scratch, "piped.eml");
    const pipeScript = join(scratch, "pipe.sh");
    await writeFile(pipeScript, `#!/bin/sh\ncat > "$1"\n`);
    await chmod(pipeScript, 0o755);

    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mx.example.test",
        "hooks:",
        "  allow_unsandboxed_exec: true",
        "  post_data:",
        "    timeout: 2s",
        "delivery:",
        "  retry_initial: 1s",
        "  retry_max: 2s",
        // Nothing listens there: fwd@'s remote copy is deferred, never
        // sent nor bounced, so its spool file stays for the tests to read.
        "outbound:",
        "  smarthost:",
        `    address: 127.0.0.1:${await freePort()}`,
        "",
      ].join("\n"),
      "domains/example.test/users":
        "alice\nbob\ncarol\nreject\ndefer\nslow\nheaders\nbroken\ntls\nlate\n",
      "domains/example.test/aliases": "fwd: someone@remote.test\nlist: carol\n",
      "hooks/post-data": POST_DATA,
      "hooks/alias-resolve": aliasResolve(`${pipeScript} ${pipeOut}`),
      "hooks/alias-exists": ALIAS_EXISTS,
      "captures/.keep": "",
    });
    for (const hook of ["post-data", "alias-resolve", "alias-exists"]) {
      await chmod(join(configDir, "hooks", hook), 0o755);
    }

    // The server inherits the test's environment: USER, SHELL and PATH
    // must reach the hooks, the canary must not.
    for (const name of ["USER", "SHELL", CANARY]) saved[name] = process.env[name];
    process.env["USER"] = "postern-hook-user";
    process.env["SHELL"] = "/bin/postern-test-shell";
    process.env[CANARY] = "leaked";
    try {
      server = await startServer({ configDir });
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
  after(async () => {
    if (server) await cleanup(server);
    await rm(scratch, { recursive: true, force: true });
  });

  const captured = (tag: string, ext: "eml" | "env" | "cwd") =>
    readFile(join(server.configDir, "captures", `${tag}.${ext}`));

  /** A refused message leaves nothing in the spool. */
  async function assertNotKept(logLine: string): Promise<void> {
    const qid = logLine.match(/ qid=(\S+) /)?.[1];
    assert.ok(qid, logLine);
    for (const file of [`queue/${qid}.msg`, `queue/${qid}.state`, `incoming/${qid}`]) {
      await assert.rejects(stat(join(server.dataDir, "spool", file)), { code: "ENOENT" }, file);
    }
  }

  describe("post-data", () => {
    it("gets the message exactly as queued, CRLF, Received on top, on stdin", async () => {
      const dir = await tempDir();
      const filler = "0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n";
      const body = [
        "From: Sender <sender@client.test>",
        "To: fwd@example.test, alice@example.test",
        "Subject: post-data stdin",
        "Message-ID: <stdin-1@client.test>",
        "",
        "First line",
        ".a leading dot that dot-stuffing must not change",
        // Larger than a pipe's buffer, so it must be streamed.
        filler.repeat(3000) + "last line",
      ].join("\r\n");
      await writeFile(join(dir, "msg.eml"), body);
      const result = await swaks(server, [
        "--ehlo",
        "client.test",
        "--from",
        "sender@client.test",
        "--to",
        "fwd@example.test,alice@example.test",
        "--data",
        join(dir, "msg.eml"),
      ]);
      await rm(dir, { recursive: true });
      const qid = queuedId(result.stdout);
      const stdin = await captured("fwd_example_test_alice_example_test", "eml");

      // fwd@ forwards to a remote address, so the message stays queued.
      const queued = await readFile(join(server.dataDir, "spool", "queue", `${qid}.msg`));
      // The seal line, then the envelope line, then the message.
      const afterEnvelope = queued.subarray(queued.indexOf(0x0a, queued.indexOf(0x0a) + 1) + 1);
      assert.equal(stdin.length, afterEnvelope.length);
      assert.ok(stdin.equals(afterEnvelope), "the hook's stdin differs from the queued message");

      const text = stdin.toString("utf8");
      const received = text.match(
        new RegExp(
          `^Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n` +
            `\\tby mx\\.example\\.test \\(Postern\\) with ESMTP id ${qid}\\r\\n` +
            // Several recipients are not named (for privacy).
            `\\t; [^\\r\\n]+ \\+0000\\r\\n`,
        ),
      );
      assert.ok(received, text.slice(0, 400));
      assert.equal(text.slice(received[0].length), body + "\r\n");
      assert.doesNotMatch(text, /[^\r]\n/, "every line ends in CRLF");

      const [stored] = await eventually(async () => {
        const m = await maildirMessages(server.dataDir, "example.test", "alice");
        return m.some((s) => s.includes("stdin-1@client.test")) ? m : undefined;
      });
      assert.equal(
        stored,
        "Return-Path: <sender@client.test>\nDelivered-To: alice@example.test\n" +
          text.replaceAll("\r\n", "\n"),
      );
    });

    it("gets chasquid's environment and nothing else from the server's", async () => {
      const env = parseEnv(
        (await captured("fwd_example_test_alice_example_test", "env")).toString(),
      );
      assert.equal(env[CANARY], undefined, "the server's environment leaked into the hook");
      assert.deepEqual(env, {
        USER: "postern-hook-user",
        SHELL: "/bin/postern-test-shell",
        PATH: process.env["PATH"],
        PWD: server.configDir,
        REMOTE_ADDR: "127.0.0.1",
        EHLO_DOMAIN: "client.test",
        MAIL_FROM: "sender@client.test",
        RCPT_TO: "fwd@example.test alice@example.test",
        AUTH_AS: "",
        ON_TLS: "0",
        FROM_LOCAL_DOMAIN: "0",
        SPF_PASS: "0",
      });
      // It runs in the configuration directory.
      assert.equal(
        (await captured("fwd_example_test_alice_example_test", "cwd")).toString(),
        `${await realpath(server.configDir)}\n`,
      );
    });

    it("sees ON_TLS=1 over STARTTLS and FROM_LOCAL_DOMAIN=1 for a local sender", async () => {
      const result = await swaks(server, [
        "--tls",
        "--ehlo",
        "[127.0.0.1]",
        "--from",
        "alice@EXAMPLE.test",
        "--to",
        "tls@example.test",
        "--header",
        "Subject: over tls",
      ]);
      queuedId(result.stdout);
      const env = parseEnv((await captured("tls_example_test", "env")).toString());
      assert.equal(env["ON_TLS"], "1");
      assert.equal(env["FROM_LOCAL_DOMAIN"], "1");
      assert.equal(env["SPF_PASS"], "0");
      assert.equal(env["AUTH_AS"], "");
      assert.equal(env["MAIL_FROM"], "alice@EXAMPLE.test");
      assert.equal(env["RCPT_TO"], "tls@example.test");
      assert.equal(env["EHLO_DOMAIN"], "[127.0.0.1]");
      assert.equal(env[CANARY], undefined);
    });

    it("adds the valid header lines of stdout at the very top, in order", async () => {
      const result = await swaks(server, [
        "--from",
        "sender@client.test",
        "--to",
        "headers@example.test",
        "--header",
        "Subject: with hook headers",
      ]);
      const qid = queuedId(result.stdout);
      const [stored] = await eventually(async () => {
        const m = await maildirMessages(server.dataDir, "example.test", "headers");
        return m.length > 0 ? m : undefined;
      });
      const lines = stored!.split("\n");
      assert.deepEqual(lines.slice(0, 7), [
        "Return-Path: <sender@client.test>",
        "Delivered-To: headers@example.test",
        "X-Hook-One: first",
        "X-Hook-Two: second",
        "\tcontinued",
        "X-Hook-Three: third",
        "Received: from " + lines[6]!.slice("Received: from ".length),
      ]);
      assert.match(lines[7]!, new RegExp(`^\\tby mx\\.example\\.test \\(Postern\\) .* id ${qid}$`));
      assert.doesNotMatch(stored!, /not a header|Bad Name|orphan/);
      const logged = server.stderr().split("\n").find((l) =>
        l.includes(`qid=${qid}`) && l.includes("invalid header lines")
      );
      assert.ok(logged, server.stderr());
      assert.ok(
        logged.includes(
          'dropped="this line is not a header | Bad Name: a space in the name |   orphan continuation"',
        ),
        logged,
      );
    });

    it("exit status 20 refuses permanently: 554 5.7.1 with the last line of stdout", async () => {
      const result = await swaks(server, ["--to", "reject@example.test"]);
      assert.equal(dataReply(result.stdout), "554 5.7.1 Spam detected, go away");
      // A refusal the hook chose is logged as such, not as a hook failure.
      const line = await server.waitForLog(
        /event=rejected stage=data reason=\w+ .*reply="554 5\.7\.1 Spam detected, go away"/,
      );
      await assertNotKept(line);
      assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "reject"), []);
      assert.match(line, / reason=post_data_reject /);
    });

    it("another exit status refuses temporarily: 451 4.3.0 with the last line", async () => {
      const result = await swaks(server, ["--to", "defer@example.test"]);
      assert.equal(dataReply(result.stdout), "451 4.3.0 Greylisted, try again later");
      const line = await server.waitForLog(
        /event=rejected stage=data reason=post_data_\w+ .*reply="451 4\.3\.0 Greylisted, try again later"/,
      );
      await assertNotKept(line);
      assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "defer"), []);
    });

    it("a hook past its timeout (2s) is killed and the message refused with 451", async () => {
      const started = Date.now();
      const result = await swaks(server, ["--to", "slow@example.test"]);
      const elapsed = Date.now() - started;
      assert.equal(
        dataReply(result.stdout),
        "451 4.3.0 Message could not be checked, try again later",
        result.stdout,
      );
      const line = await server.waitForLog(
        /event=rejected stage=data reason=post_data_failure .*reply="451 /,
      );
      await assertNotKept(line);
      assert.match(
        server.stderr(),
        /post-data hook failed.*cause="timeout: no exit within 2000 ms"/,
      );
      assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "slow"), []);
      // Not before the 2 s timeout; that the timeout (not the hook, which
      // sleeps 15 s) ended it is the cause logged above.
      assert.ok(elapsed >= 1900, `replied after ${elapsed} ms`);
    });
  });

  describe("alias-resolve", () => {
    it("passes the address as the single argument and merges the output with the file", async () => {
      const qid = queuedId(
        (await swaks(server, [
          "--to",
          "L.I.S.T+news@Example.Test",
          "--header",
          "Subject: to the list",
        ])).stdout,
      );
      for (const user of ["carol", "alice", "bob"]) {
        const got = await eventually(
          async () => {
            const m = (await maildirMessages(server.dataDir, "example.test", user)).filter((s) =>
              s.includes("Subject: to the list\n")
            );
            return m.length > 0 ? m : undefined;
          },
          15_000,
          `the list message in ${user}'s mailbox`,
        );
        assert.equal(got.length, 1, `${user} got ${got.length} copies`);
        assert.match(got[0]!, new RegExp(`^Delivered-To: ${user}@example\\.test$`, "m"));
      }
      await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
      const calls = (await readFile(join(server.configDir, "captures", "alias-resolve.calls")))
        .toString().split("\n");
      assert.ok(calls.includes("1|list@example.test"), calls.join("\n"));
    });

    it("resolves to a pipe command given as '| command'", async () => {
      const qid = queuedId(
        (await swaks(server, [
          "--from",
          "sender@client.test",
          "--to",
          "piped@example.test",
          "--header",
          "Subject: through the hook's pipe",
        ])).stdout,
      );
      const output = await eventually(() =>
        readFile(pipeOut, "utf8").then(
          (t) => t.includes("through the hook's pipe") ? t : undefined,
          () => undefined,
        )
      );
      assert.match(
        output,
        /^Return-Path: <sender@client\.test>\nDelivered-To: piped@example\.test\n/,
      );
      await server.waitForLog(new RegExp(`qid=${qid} event=delivery .*result=sent dest="\\| `));
    });

    it("a failing hook defers the delivery; the message stays queued and is retried", async () => {
      const qid = queuedId(
        (await swaks(server, ["--to", "broken@example.test", "--header", "Subject: hook down"]))
          .stdout,
      );
      const line = await server.waitForLog(
        new RegExp(`qid=${qid} event=delivery to=<broken@example\\.test> result=deferred `),
      );
      assert.match(line, /alias-resolve hook failed: exit status 3: the alias database is down/);
      // Retried (retry_initial: 1s), still deferred, still queued, never delivered.
      const deferrals = () =>
        server.mailLog.filter((l) =>
          l.includes(`qid=${qid} event=delivery`) && l.includes("result=deferred")
        ).length;
      await eventually(
        () => Promise.resolve(deferrals() >= 2 ? true : undefined),
        10_000,
        "a second deferred attempt",
      );
      assert.ok((await stat(join(server.dataDir, "spool", "queue", `${qid}.msg`))).isFile());
      assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "broken"), []);
      assert.ok(!server.mailLog.some((l) => l.includes(`qid=${qid} event=completed`)));
      // Once the hook works again, a retry delivers it.
      await writeFile(join(server.configDir, "captures", "fixed"), "");
      await server.waitForLog(
        new RegExp(`qid=${qid} event=delivery to=<broken@example\\.test> result=sent`),
      );
      const stored = await maildirMessages(server.dataDir, "example.test", "broken");
      assert.equal(stored.length, 1);
      assert.match(stored[0]!, /^Subject: hook down$/m);
    });
  });

  describe("alias-exists", () => {
    it("exit 0 accepts an address that is in no file, as its normalized form", async () => {
      const result = await swaks(server, [
        "--to",
        "Gh.Ost+tag@EXAMPLE.test",
        "--header",
        "Subject: to a ghost",
      ]);
      assert.equal(rcptReply(result.stdout), "250 2.1.5 Accepted", result.stdout);
      queuedId(result.stdout);
      const stored = await eventually(async () => {
        const m = await maildirMessages(server.dataDir, "example.test", "ghost");
        return m.length > 0 ? m : undefined;
      });
      assert.match(stored[0]!, /^Subject: to a ghost$/m);
      const calls = (await readFile(join(server.configDir, "captures", "alias-exists.calls")))
        .toString().split("\n");
      assert.ok(calls.includes("1|ghost@example.test"), calls.join("\n"));
    });

    it("any other exit status refuses with 550 5.1.1", async () => {
      const result = await swaks(server, ["--to", "nobody@example.test", "--quit-after", "RCPT"]);
      assert.equal(
        rcptReply(result.stdout),
        "550 5.1.1 No such user here",
        result.stdout,
      );
      const calls = (await readFile(join(server.configDir, "captures", "alias-exists.calls")))
        .toString().split("\n");
      assert.ok(calls.includes("1|nobody@example.test"), calls.join("\n"));
      // Users and file aliases are known without asking the hook.
      assert.ok(!calls.some((c) => /\|(alice|list)@/.test(c)), calls.join("\n"));
    });
  });

  describe("hook files", () => {
    it("ignores a hook file that is not executable, with a warning", async () => {
      const path = join(server.configDir, "hooks", "post-data");
      await rm(path);
      await writeFile(path, '#!/bin/sh\necho "must not run"\nexit 20\n', { mode: 0o644 });
      await eventually(
        () =>
          Promise.resolve(
            server.stderr().includes(`hook file is not executable; ignored" path=${path}`)
              ? true
              : undefined,
          ),
        5_000,
        "the not-executable warning",
      );
      const result = await swaks(server, ["--to", "late@example.test"]);
      queuedId(result.stdout);
    });

    it("runs a hook file once it is made executable", async () => {
      const path = join(server.configDir, "hooks", "post-data");
      await chmod(path, 0o755);
      await new Promise((r) => setTimeout(r, 1500));
      const result = await swaks(server, ["--to", "late@example.test"]);
      assert.equal(dataReply(result.stdout), "554 5.7.1 must not run");
    });
  });
});

describe("executable hooks without allow_unsandboxed_exec", () => {
  it("refuse to start, naming the file and the setting; not executable, it is ignored", async () => {
    const configDir = await tempDir("postern-config-");
    const dataDir = await tempDir("postern-data-");
    let server: Server | undefined;
    try {
      await writeTree(configDir, {
        "domains/example.test/users": "alice\n",
        "hooks/post-data": "#!/bin/sh\necho 'must not run'\nexit 20\n",
      });
      const hook = join(configDir, "hooks", "post-data");
      await chmod(hook, 0o755);
      const [cmd, ...args] = posternCommand([
        "serve",
        "--config",
        configDir,
        "--data",
        dataDir,
        "--listen",
        "127.0.0.1:0",
      ]);
      const refused = await runBounded(cmd!, args, 30_000);
      assert.equal(refused.signal, null, `still running after 30 s; stderr:\n${refused.stderr}`);
      assert.equal(refused.code, 1, refused.stderr);
      assert.ok(refused.stderr.includes("postern: hook error:\n"), refused.stderr);
      assert.ok(refused.stderr.includes(`"${hook}"`), refused.stderr);
      assert.ok(refused.stderr.includes("hooks.allow_unsandboxed_exec: true"), refused.stderr);

      // The same file without the execute bit is no hook: the server starts.
      await chmod(hook, 0o644);
      server = await startServer({ configDir, dataDir });
      assert.ok(
        server.stderr().includes(`hook file is not executable; ignored" path=${hook}`),
        server.stderr(),
      );
      const result = await swaks(server, ["--to", "alice@example.test"]);
      queuedId(result.stdout);
      await eventually(async () => {
        const m = await maildirMessages(dataDir, "example.test", "alice");
        return m.length > 0 ? m : undefined;
      });
    } finally {
      await server?.stop();
      await rm(configDir, { recursive: true, force: true });
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
