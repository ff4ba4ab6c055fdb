/**
 * Executable hooks end to end, with chasquid's exact protocol: post-data
 * gets the message on standard input and the transaction in its
 * environment, and answers with its exit status and standard output;
 * alias-resolve and alias-exists get the address as their single argument.
 * A hook file that is not executable is ignored until it is. One server
 * runs them all (hooks_exec_fixtures.ts starts it). The refusal to run them
 * without `hooks.allow_unsandboxed_exec` is in hooks_exec_unsandboxed_test.ts.
 */

import assert from "node:assert/strict";
import { chmod, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { cleanup, eventually, maildirMessages, type Server, swaks, tempDir } from "./harness.ts";
import {
  CANARY,
  dataReply,
  parseEnv,
  queuedId,
  rcptReply,
  startExecHookServer,
} from "./hooks_exec_fixtures.ts";

describe("executable hooks (chasquid's protocol)", () => {
  let server: Server;
  let scratch: string;
  let pipeOut: string;

  before(async () => {
    ({ server, scratch, pipeOut } = await startExecHookServer());
  });
  after(async () => {
    if (server) await cleanup(server);
    if (scratch) await rm(scratch, { recursive: true, force: true });
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
