/**
 * TypeScript module hooks for aliases, end to end: `hooks/alias-resolve.ts`
 * adds targets to those of the aliases file at delivery, and
 * `hooks/alias-exists.ts` accepts addresses at RCPT that no file knows.
 * Failures defer deliveries (never a silent drop) or refuse recipients;
 * module state lives until the hook file changes.
 */

import assert from "node:assert/strict";
import { chmod, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  replies,
  ROOT,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

const SDK = pathToFileURL(join(ROOT, "hooks", "mod.ts")).href;

/**
 * The alias-resolve hook. `echo` is a pipe command that records its last
 * argument, so a target `| echo FILE ADDRESS` shows what the hook got.
 * `broken` makes throw@, shape@ and slow@ fail; without it they are no
 * aliases.
 */
function aliasResolveHook(echo: string, echoOut: string, broken: boolean): string {
  return `import type { AliasInput, AliasResolveResult } from "${SDK}";

export default async function ({ address }: AliasInput): Promise<AliasResolveResult> {
  await Promise.resolve();
  if (address.startsWith("echo")) return "| ${echo} ${echoOut} " + address;
  switch (address) {
    case "str@example.test":
      return "alice, bob@example.test";
    case "arr@example.test":
      return ["carol", "dave@example.test"];
    case "merged@example.test":
      return "bob, carol";
    case "normal@example.test":
      return "dave";
  }
  if (${broken}) {
    switch (address) {
      case "throw@example.test":
        throw new Error("the alias database is down");
      case "shape@example.test":
        return 42 as unknown as AliasResolveResult;
      case "slow@example.test":
        await new Promise((r) => setTimeout(r, 30_000));
        return "alice";
    }
  }
  return undefined;
}
`;
}

/** The alias-exists hook; `first@` exists only on the first call of a module instance. */
function aliasExistsHook(version: number): string {
  return `// version ${version}
import type { AliasExistsResult, AliasInput } from "${SDK}";

let calls = 0;

export default async function ({ address }: AliasInput): Promise<AliasExistsResult> {
  await Promise.resolve();
  switch (address) {
    case "yes@example.test":
      return true;
    case "no@example.test":
      return false;
    case "first@example.test":
      calls++;
      return calls === 1;
    case "explode@example.test":
      throw new Error("the lookup exploded");
    case "word@example.test":
      return "yes" as unknown as AliasExistsResult;
    case "sleepy@example.test":
      await new Promise((r) => setTimeout(r, 30_000));
      return true;
  }
  return false;
}
`;
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

describe("TypeScript alias hooks", () => {
  let server: Server;
  let scratch: string;
  let echoOut: string;
  let echo: string;

  before(async () => {
    scratch = await tempDir("postern-alias-hooks-");
    echoOut = join(scratch, "echo.txt");
    echo = join(scratch, "echo.sh");
    await writeFile(echo, `#!/bin/sh\nprintf '%s\\n' "$2" > "$1"\ncat > /dev/null\n`);
    await chmod(echo, 0o755);
    server = await startServer({
      config: {
        "postern.yaml": [
          "hostname: mx.example.test",
          "hooks:",
          "  alias_resolve:",
          "    timeout: 1s",
          // The hook's pipe targets run only programs its grants name.
          "    allow:",
          `      run: [${JSON.stringify(echo)}]`,
          "  alias_exists:",
          "    timeout: 1s",
          "delivery:",
          "  retry_initial: 1s",
          "  retry_max: 2s",
          "",
        ].join("\n"),
        "domains/example.test/users": [
          "alice",
          "bob",
          "carol",
          "dave",
          "plain",
          "str",
          "arr",
          "normal",
          "echo",
          "throw",
          "shape",
          "slow",
          "",
        ].join("\n"),
        "domains/example.test/aliases": "merged: alice\nnone: carol\n",
        "hooks/alias-resolve.ts": aliasResolveHook(echo, echoOut, true),
        "hooks/alias-exists.ts": aliasExistsHook(1),
      },
    });
  });
  after(async () => {
    if (server) await cleanup(server);
    await rm(scratch, { recursive: true, force: true });
  });

  async function send(to: string, subject: string): Promise<string> {
    const result = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      to,
      "--header",
      `Subject: ${subject}`,
    ]);
    return queuedId(result.stdout);
  }

  /** The messages with `subject` in `user`'s mailbox. */
  async function copies(user: string, subject: string): Promise<string[]> {
    return (await maildirMessages(server.dataDir, "example.test", user)).filter((m) =>
      m.includes(`\nSubject: ${subject}\n`)
    );
  }

  /** Waits until the message is complete, then checks who has a copy. */
  async function assertDelivered(
    qid: string,
    subject: string,
    expected: Record<string, number>,
  ): Promise<void> {
    await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
    const users = ["alice", "bob", "carol", "dave", "plain", "str", "arr", "merged", "none"];
    const got: Record<string, number> = {};
    for (const user of new Set([...users, ...Object.keys(expected)])) {
      const n = (await copies(user, subject)).length;
      if (n > 0) got[user] = n;
    }
    assert.deepEqual(got, expected);
  }

  describe("alias-resolve.ts", () => {
    it("a returned string is an aliases right-hand side", async () => {
      const qid = await send("str@example.test", "hook string");
      await assertDelivered(qid, "hook string", { alice: 1, bob: 1 });
      const [stored] = await copies("bob", "hook string");
      assert.match(
        stored!,
        /^Return-Path: <sender@client\.test>\nDelivered-To: bob@example\.test\n/,
      );
    });

    it("a returned array lists targets", async () => {
      const qid = await send("arr@example.test", "hook array");
      await assertDelivered(qid, "hook array", { carol: 1, dave: 1 });
    });

    it("returning nothing leaves the user's mailbox, or the file's targets", async () => {
      const toUser = await send("plain@example.test", "hook nothing user");
      await assertDelivered(toUser, "hook nothing user", { plain: 1 });
      const toAlias = await send("none@example.test", "hook nothing alias");
      await assertDelivered(toAlias, "hook nothing alias", { carol: 1 });
    });

    it("adds its targets to the aliases file's: each target gets one copy", async () => {
      const qid = await send("merged@example.test", "hook merged");
      await assertDelivered(qid, "hook merged", { alice: 1, bob: 1, carol: 1 });
    });

    it("is called with the normalized address", async () => {
      const qid = await send("E.Cho+Tag@Example.TEST", "hook normalized");
      await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
      assert.equal(await readFile(echoOut, "utf8"), "echo@example.test\n");
      const again = await send("Nor.Mal+news@EXAMPLE.test", "hook normalized 2");
      await assertDelivered(again, "hook normalized 2", { dave: 1 });
    });

    it("a throwing hook, a bad result or a timeout defers delivery until the hook is fixed", async () => {
      const cases = [
        {
          user: "throw",
          cause: /alias-resolve hook failed: \S+ Error: the alias database is down/,
        },
        {
          user: "shape",
          cause: /alias-resolve hook failed: bad_result: must be a string, a list of strings/,
        },
        { user: "slow", cause: /alias-resolve hook failed: timeout: no result within 1000 ms/ },
      ];
      const qids: string[] = [];
      for (const { user } of cases) qids.push(await send(`${user}@example.test`, `hook ${user}`));
      for (const [i, { user, cause }] of cases.entries()) {
        const line = await server.waitForLog(
          new RegExp(`qid=${qids[i]} event=delivery to=<${user}@example\\.test> result=deferred `),
        );
        assert.match(line, cause);
      }
      // Nothing delivered, nothing lost: each message is still queued and retried.
      for (const [i, { user }] of cases.entries()) {
        assert.ok((await stat(join(server.dataDir, "spool", "queue", `${qids[i]}.msg`))).isFile());
        assert.deepEqual(await copies(user, `hook ${user}`), []);
        assert.ok(!server.mailLog.some((l) => l.includes(`qid=${qids[i]} event=completed`)));
      }
      await eventually(
        () =>
          Promise.resolve(
            qids.every((qid) =>
                server.mailLog.filter((l) =>
                  l.includes(`qid=${qid} event=delivery`) && l.includes("result=deferred")
                ).length >= 2
              )
              ? true
              : undefined,
          ),
        15_000,
        "a second deferred attempt of each message",
      );

      await writeFile(
        join(server.configDir, "hooks", "alias-resolve.ts"),
        aliasResolveHook(echo, echoOut, false),
      );
      for (const [i, { user }] of cases.entries()) {
        const qid = qids[i]!;
        await server.waitForLog(
          new RegExp(`qid=${qid} event=delivery to=<${user}@example\\.test> result=sent`),
          20_000,
        );
        await assertDelivered(qid, `hook ${user}`, { [user]: 1 });
      }
    });
  });

  describe("alias-exists.ts", () => {
    it("true accepts an address that is in no file, asked in normalized form", async () => {
      const result = await swaks(server, [
        "--from",
        "sender@client.test",
        "--to",
        "Y.E.S+tag@Example.Test",
        "--header",
        "Subject: hook exists",
      ]);
      assert.equal(rcptReply(result.stdout), "250 2.1.5 Accepted", result.stdout);
      const qid = queuedId(result.stdout);
      await assertDelivered(qid, "hook exists", { yes: 1 });
    });

    it("false refuses with 550 5.1.1", async () => {
      const result = await swaks(server, ["--to", "no@example.test", "--quit-after", "RCPT"]);
      assert.equal(rcptReply(result.stdout), "550 5.1.1 No such user here", result.stdout);
      await server.waitForLog(
        /event=rejected stage=rcpt reason=no_such_user .*to=<no@example\.test>/,
      );
    });

    it("keeps module state across calls and starts afresh within a second of a change", async () => {
      const rcpt = async () =>
        rcptReply(
          (await swaks(server, ["--to", "first@example.test", "--quit-after", "RCPT"])).stdout,
        );
      assert.equal(await rcpt(), "250 2.1.5 Accepted");
      assert.equal(await rcpt(), "550 5.1.1 No such user here");
      assert.equal(await rcpt(), "550 5.1.1 No such user here");
      await writeFile(join(server.configDir, "hooks", "alias-exists.ts"), aliasExistsHook(2));
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await rcpt(), "250 2.1.5 Accepted", "no fresh state 1 s after the change");
      assert.equal(await rcpt(), "550 5.1.1 No such user here");
    });

    it("a throwing hook means the address does not exist: 550, and a log line", async () => {
      const result = await swaks(server, ["--to", "explode@example.test", "--quit-after", "RCPT"]);
      assert.equal(rcptReply(result.stdout), "550 5.1.1 No such user here", result.stdout);
      const logged = await eventually(() =>
        Promise.resolve(
          server.stderr().split("\n").find((l) =>
            l.includes("alias-exists hook failed") && l.includes("address=explode@example.test")
          ),
        )
      );
      assert.match(logged, /cause=".*the lookup exploded/);
    });

    it("a result that is not a boolean means the address does not exist", async () => {
      const result = await swaks(server, ["--to", "word@example.test", "--quit-after", "RCPT"]);
      assert.equal(rcptReply(result.stdout), "550 5.1.1 No such user here", result.stdout);
      const logged = await eventually(() =>
        Promise.resolve(
          server.stderr().split("\n").find((l) =>
            l.includes("alias-exists hook failed") && l.includes("address=word@example.test")
          ),
        )
      );
      assert.match(logged, /cause="bad_result: must be true or false"/);
    });

    it("a hook past its timeout (1s) means the address does not exist", async () => {
      const started = Date.now();
      const result = await swaks(server, ["--to", "sleepy@example.test", "--quit-after", "RCPT"]);
      const elapsed = Date.now() - started;
      assert.equal(rcptReply(result.stdout), "550 5.1.1 No such user here", result.stdout);
      // Not before the 1 s timeout; that the timeout ended the call (the
      // hook sleeps 30 s, then says yes) is the cause logged.
      assert.ok(elapsed >= 900, `answered after ${elapsed} ms`);
      await eventually(() =>
        Promise.resolve(
          /alias-exists hook failed.*address=sleepy@example\.test cause="timeout: no result within 1000 ms"/
            .test(server.stderr()) || undefined,
        )
      );
    });
  });
});
