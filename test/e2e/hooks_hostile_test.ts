/**
 * Hostile hooks: every escape attempt a hook author could try, kept so that
 * none comes back (issue 15). hooks_sandbox_test.ts covers the basics
 * (/etc/passwd, the spool, other hooks' files, writes, connect and fetch,
 * Deno.Command, Deno.env, Deno.dlopen, Cache API and localStorage, memory,
 * time, output); this suite adds the rest: metadata and symlinks, listen,
 * serve, Unix sockets, TLS, HTTP/2 and DNS, file: fetches, the inspector,
 * heap snapshots, remote, outside, dynamic and data: imports, require and
 * node: modules, worker threads and permission escalation, KV, signals to
 * Postern, node:child_process, the environment through process.env, and
 * the answers that were escapes: a pipe target outside the hook's grants
 * (escape 1) and header fields injected through line breaks (escape 6).
 *
 * Each attempt reports what happened through the hook's answer (headers
 * X-Outcome, X-Error-Name, X-Error, X-Result) or through a side effect the
 * test checks (a file that must not exist, a port nobody may reach).
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server as NetServer } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
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
import { ATTEMPTS, PROBE_SOURCE } from "./hostile_probe.ts";

/** Sends a message whose body names an attempt; returns the reply to DATA's end. */
async function send(server: Server, body: string, extra: string[] = []): Promise<string> {
  const result = await swaks(server, [
    "--from",
    "mallory@client.test",
    "--to",
    "alice@example.test",
    "--body",
    body,
    ...extra,
  ]);
  const lines = replies(result.stdout);
  const at = lines.findIndex((l) => l.startsWith("354"));
  return at >= 0 ? lines[at + 1] ?? "" : `(no DATA) ${result.stdout}`;
}

/** The delivered copy of the message queued as `reply` says. */
async function delivered(server: Server, reply: string): Promise<string> {
  const qid = reply.match(/^250 2\.0\.0 Ok: queued as (\w+)$/)?.[1];
  assert.ok(qid, `not accepted: ${reply}\n${server.stderr().slice(-3000)}`);
  return await eventually(
    async () =>
      (await maildirMessages(server.dataDir, "example.test", "alice")).find((m) =>
        m.includes(`id ${qid}`)
      ),
    15_000,
    `delivery of ${qid}`,
  );
}

/** The values of header `name` in the head of `message`. */
function fields(message: string, name: string): string[] {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.split("\n").filter((l) => l.startsWith(`${name}: `)).map((l) =>
    l.slice(name.length + 2)
  );
}

describe("hostile module hook (post-data, default grants)", () => {
  let server: Server;
  let scratch: string;
  let listener: NetServer;
  let unixListener: NetServer;
  let port = 0;
  let connections = 0;
  const secretEnv = `hostile-env-${process.pid}`;

  before(async () => {
    scratch = await tempDir("postern-hostile-");
    await writeFile(join(scratch, "secret.txt"), "SECRET-OUTSIDE-THE-GRANTS\n");
    await writeFile(join(scratch, "secret.js"), 'export default "SECRET-MODULE";\n');
    await writeFile(join(scratch, "secret.json"), '{ "secret": "SECRET-JSON" }\n');
    listener = createServer((socket) => {
      connections++;
      socket.end("HTTP/1.0 200 OK\r\ncontent-type: text/javascript\r\n\r\nexport default 1;\n");
    });
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", () => r()));
    port = (listener.address() as { port: number }).port;
    unixListener = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((r) => unixListener.listen(join(scratch, "postern.sock"), () => r()));
    server = await startServer({
      env: { POSTERN_HOSTILE_SECRET: secretEnv },
      config: {
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 20s\n",
        "domains/example.test/users": "alice\n",
        "hooks/post-data.ts": PROBE_SOURCE
          .replaceAll("__SCRATCH__", scratch)
          .replaceAll("__SECRET_JS_URL__", pathToFileURL(join(scratch, "secret.js")).href)
          .replaceAll("__PORT__", String(port)),
        "hooks/post-data/own.txt": "own file\n",
      },
    });
  });

  after(async () => {
    if (server) await cleanup(server);
    await new Promise((r) => listener?.close(r));
    await new Promise((r) => unixListener?.close(r));
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  for (const attempt of ATTEMPTS) {
    it(`refuses ${attempt.name}: ${attempt.what}`, async () => {
      const reply = await send(server, `case=${attempt.name}`);
      if (attempt.crashes) {
        assert.equal(reply, "451 4.3.0 Message could not be checked, try again later");
        const next = await delivered(server, await send(server, "case=none"));
        assert.equal(fields(next, "X-Outcome")[0], "allowed");
        return;
      }
      const message = await delivered(server, reply);
      const outcome = fields(message, "X-Outcome")[0];
      const detail = `${fields(message, "X-Error-Name")[0]}: ${fields(message, "X-Error")[0]}; ` +
        `result ${fields(message, "X-Result")[0]}`;
      assert.equal(fields(message, "X-Case")[0], attempt.name, "the probe answered");
      assert.equal(outcome, "refused", `${attempt.name} was not refused: ${detail}`);
      if (attempt.error) assert.match(detail, attempt.error);
      assert.ok(!message.includes("SECRET-"), `${attempt.name} leaked a secret:\n${message}`);
      assert.ok(!message.includes(secretEnv), `${attempt.name} leaked the environment`);
    });
  }

  it("leaves no trace of the attempts: no file written, no port reached, Postern alive", async () => {
    for (
      const name of [
        "written",
        "touched",
        "linked",
        "hard",
        "node-written",
        "spawned",
        "listened.sock",
      ]
    ) {
      assert.equal(existsSync(join(scratch, name)), false, `${name} exists`);
    }
    const snapshots = (await readdir(server.configDir)).filter((n) => n.endsWith(".heapsnapshot"));
    assert.deepEqual(snapshots, [], "a heap snapshot was written into the config directory");
    assert.equal(existsSync(join(server.configDir, "hooks", "post-data", "link")), false);
    assert.equal(connections, 0, "a hook reached a port it was not granted");
    assert.ok(
      existsSync(join(server.configDir, "hooks", "post-data.ts")),
      "the hook removed itself",
    );
    // The signals went nowhere: the server still takes mail.
    const message = await delivered(server, await send(server, "case=none"));
    assert.equal(fields(message, "X-Outcome")[0], "allowed");
  });

  it("learns the paths the README says it can: config dir, its module, the data dir, deno", async () => {
    const message = await delivered(server, await send(server, "case=learn"));
    const learned = JSON.parse(fields(message, "X-Result")[0] ?? "{}");
    assert.equal(learned.cwd, server.configDir);
    assert.equal(
      learned.module,
      pathToFileURL(join(server.configDir, "hooks", "post-data.ts")).href,
    );
    const bootstrap = pathToFileURL(join(server.dataDir, "run", "hook_worker.js")).href;
    assert.equal(learned.mainModule, bootstrap);
    assert.match(learned.execPath, /deno/);
    assert.ok(learned.pid > 0 && learned.ppid > 0, message);
  });

  it("follows a symlink the operator put in its folder, as the README says: that is a grant", async () => {
    await symlink(
      join(scratch, "secret.txt"),
      join(server.configDir, "hooks", "post-data", "operator-link"),
    );
    const message = await delivered(server, await send(server, "case=operator-link"));
    assert.equal(fields(message, "X-Outcome")[0], "allowed", message);
    assert.equal(fields(message, "X-Result")[0], "SECRET-OUTSIDE-THE-GRANTS");
  });

  it("escape 6: a list entry with a line break adds no field; the entry is dropped and logged", async () => {
    const reply = await send(server, "case=inject-list");
    const message = await delivered(server, reply);
    // Counted and logged apart from a clean accept, as chasquid's post-data:badoutput.
    const qid = reply.split(" ").at(-1);
    await server.waitForLog(new RegExp(`qid=${qid} event=hook hook=post-data outcome=bad_output`));
    assert.deepEqual(fields(message, "X-Injected"), [], message);
    assert.deepEqual(fields(message, "X-A"), [], "the entry was kept in part");
    assert.deepEqual(fields(message, "X-Folded"), ["one"], "folding is kept");
    assert.ok(message.includes("X-Folded: one\n two\n"));
    await eventually(
      () =>
        Promise.resolve(
          /msg="post-data hook returned invalid header lines; they were dropped" qid=\w+ dropped="X-A: one\\r\\nX-Injected: yes/
              .test(server.stderr())
            ? true
            : undefined,
        ),
      5_000,
      "the dropped entry in the log",
    );
  });

  it("escape 6: bare CR, bare LF, NUL and invalid names in entries and record values add no field", async () => {
    for (const name of ["inject-bare", "inject-record"]) {
      const message = await delivered(server, await send(server, `case=${name}`));
      assert.equal(fields(message, "X-Case")[0], name);
      assert.deepEqual(fields(message, "X-Injected"), [], message);
      assert.ok(!/\nX-Bad|\nBad Name|\nX-Nul/.test(message), message);
    }
  });

  it("escape 6: a decoded Subject copied into a header cannot add a field for the sender", async () => {
    const subject = `=?UTF-8?B?${btoa("hello\r\nX-Injected: from the sender")}?=`;
    const message = await delivered(
      server,
      await send(server, "case=subject-copy", ["--header", `Subject: ${subject}`]),
    );
    assert.equal(fields(message, "X-Case")[0], "subject-copy");
    assert.deepEqual(fields(message, "X-Injected"), [], message);
    assert.deepEqual(fields(message, "X-Subject-Copy"), []);
  });
});

describe("hostile alias-resolve module hook (escape 1: pipe targets)", () => {
  let server: Server;
  let scratch: string;
  let granted: string;

  before(async () => {
    scratch = await tempDir("postern-hostile-alias-");
    granted = join(scratch, "granted.sh");
    await writeFile(granted, `#!/bin/sh\ncat > "${scratch}/granted-ran"\n`);
    await chmod(granted, 0o755);
    await mkdir(join(scratch, "bin"));
    await symlink(granted, join(scratch, "link-to-granted.sh"));
    const hook = `export default function ({ address }) {
  const local = address.split("@")[0];
  // fanout@ and its descendants: 20 new local names a level down (a name
  // never comes twice, so that no alias is expanded once for all), 9 deep.
  if (local === "fanout" || local.startsWith("fanout-")) {
    const level = local.split("-").length - 1;
    return level >= 9 ? [] : Array.from({ length: 20 }, (_, i) => local + "-" + i + "@example.test");
  }
  const answers = {
    pwn: "| /bin/sh -c id>${scratch}/pwned",
    bare: "| sh -c id>${scratch}/pwned-bare",
    relative: "| ./bin/sh -c id>${scratch}/pwned-relative",
    dotdot: "| ${scratch}/../${scratch.split("/").pop()}/granted.sh",
    mixed: ["alice", "| /bin/sh -c id>${scratch}/pwned-mixed"],
    granted: "| ${granted} arg",
    nospace: "|/bin/sh -c id>${scratch}/pwned-nospace",
    tabs: "\t|\t/bin/sh\t-c id>${scratch}/pwned-tabs",
    envprefix: "| PATH=${scratch}/bin /bin/sh -c id>${scratch}/pwned-envprefix",
    quoted: '| "/bin/sh" -c id>${scratch}/pwned-quoted',
    symlink: "| ${scratch}/link-to-granted.sh",
    climb: "../../../../../..${scratch}/climbed@example.test",
    remote: "someone@remote.test",
  };
  return answers[local];
}
`;
    server = await startServer({
      config: {
        "postern.yaml": [
          "hooks:",
          "  alias_resolve:",
          "    allow:",
          `      run: [${JSON.stringify(granted)}]`,
          "delivery:",
          "  retry_initial: 1s",
          "  retry_max: 2s",
          "",
        ].join("\n"),
        "domains/example.test/users":
          "alice\npwn\nbare\nrelative\ndotdot\nmixed\ngranted\nclimb\n" +
          "nospace\ntabs\nenvprefix\nquoted\nsymlink\nfanout\n",
        "hooks/alias-resolve.ts": hook,
      },
    });
  });

  after(async () => {
    if (server) await cleanup(server);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function queue(to: string): Promise<string> {
    const result = await swaks(server, ["--from", "mallory@client.test", "--to", to]);
    const qid = result.stdout.match(/250 2\.0\.0 Ok: queued as (\w+)/)?.[1];
    assert.ok(qid, result.stdout);
    return qid;
  }

  for (
    const [user, program, marker] of [
      ["pwn", "/bin/sh", "pwned"],
      ["bare", "sh", "pwned-bare"],
      ["relative", "./bin/sh", "pwned-relative"],
      ["mixed", "/bin/sh", "pwned-mixed"],
    ] as const
  ) {
    it(`refuses the pipe "${program} …" from ${user}@: never run, logged, counted, deferred and kept`, async () => {
      const qid = await queue(`${user}@example.test`);
      const line = await server.waitForLog(
        new RegExp(`qid=${qid} event=delivery to=<${user}@example\\.test> result=deferred `),
      );
      assert.match(line, new RegExp(`alias-resolve hook may not run \\\\?"${program}`));
      assert.match(
        server.stderr(),
        new RegExp(
          `level=warn msg="alias-resolve hook answered a pipe to a program it may not run; ` +
            `the delivery is deferred" hook=alias-resolve address=${user}@example\\.test ` +
            `program=${program.replaceAll(".", "\\.")} allow_run=`,
        ),
      );
      assert.ok(existsSync(join(server.dataDir, "spool", "queue", `${qid}.msg`)), "not kept");
      assert.ok(!server.mailLog.some((l) => l.includes(`qid=${qid} event=completed`)));
      assert.deepEqual(
        (await maildirMessages(server.dataDir, "example.test", "alice")).filter((m) =>
          m.includes(qid)
        ),
        [],
        "the rest of a refused answer was delivered",
      );
      assert.equal(existsSync(join(scratch, marker)), false, `${program} ran`);
    });
  }

  for (
    const [user, marker] of [
      ["nospace", "pwned-nospace"],
      ["tabs", "pwned-tabs"],
      ["envprefix", "pwned-envprefix"],
      ["quoted", "pwned-quoted"],
      ["symlink", "granted-ran"],
    ] as const
  ) {
    it(`refuses the pipe of ${user}@ (no space, tabs, an environment prefix, quotes, a symlink to a granted program)`, async () => {
      const qid = await queue(`${user}@example.test`);
      const line = await server.waitForLog(
        new RegExp(`qid=${qid} event=delivery to=<${user}@example\\.test> result=deferred `),
      );
      assert.match(line, /alias-resolve hook may not run /);
      assert.ok(existsSync(join(server.dataDir, "spool", "queue", `${qid}.msg`)), "not kept");
      assert.equal(existsSync(join(scratch, marker)), false, `${user}: the pipe ran`);
    });
  }

  it("asks the hook at most 1,000 times for one expansion: answers that fan out fail, not followed 20^9 times", async () => {
    const qid = await queue("fanout@example.test");
    // The same aliases and hook would fan out as far on a retry: a failure
    // for good (5.2.4), not a deferral that lasts the queue's lifetime.
    const line = await server.waitForLog(
      new RegExp(`qid=${qid} event=delivery to=<fanout@example\\.test> result=failed `),
    );
    assert.match(line, /the alias-resolve hook was asked more than 1000 times/);
    await server.waitForLog(new RegExp(`qid=${qid} event=dsn kind=failed `));
  });

  it("refuses a granted program named by another path (/x/../x)", async () => {
    const qid = await queue("dotdot@example.test");
    await server.waitForLog(
      new RegExp(`qid=${qid} event=delivery .* result=deferred .*may not run`),
    );
    assert.equal(existsSync(join(scratch, "granted-ran")), false);
  });

  it("an address target cannot name a file: a local part with ../ stays one mailbox in the mail root", async () => {
    const qid = await queue("climb@example.test");
    await server.waitForLog(new RegExp(`qid=${qid} event=delivery .* result=sent`));
    assert.equal(existsSync(join(scratch, "climbed")), false, "a Maildir outside the mail root");
    const domainDir = join(server.dataDir, "mail", "example.test");
    const names = await readdir(domainDir);
    const climbed = names.filter((n) => n.includes("climbed"));
    assert.equal(climbed.length, 1, names.join(", "));
    assert.ok(!climbed[0]!.startsWith(".") && !climbed[0]!.includes("/"), climbed[0]);
    assert.ok((await readdir(join(domainDir, climbed[0]!, "new"))).length === 1);
  });

  it("postern hook run reports the refusal the server makes, and runs nothing", async () => {
    const hookRun = async (address: string) => {
      const input = join(scratch, `${address}.json`);
      await writeFile(input, JSON.stringify({ address }));
      const [cmd, ...args] = posternCommand([
        "hook",
        "run",
        "alias-resolve",
        "--config",
        server.configDir,
        "--input",
        input,
      ]);
      return await run(cmd!, args);
    };
    const refused = await hookRun("pwn@example.test");
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.deepEqual(JSON.parse(refused.stdout), {
      hook: "alias-resolve",
      address: "pwn@example.test",
      error: 'alias-resolve hook may not run "/bin/sh": it is not in hooks.alias_resolve.allow.run',
      outcome: "delivery deferred",
    });
    const allowed = await hookRun("granted@example.test");
    assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr);
    assert.deepEqual(JSON.parse(allowed.stdout).targets, [`| ${granted} arg`]);
    assert.equal(existsSync(join(scratch, "pwned")), false);
  });

  it("runs the program allow.run grants, and counts each refusal", async () => {
    const qid = await queue("granted@example.test");
    await server.waitForLog(new RegExp(`qid=${qid} event=delivery .* result=sent`));
    assert.match(await readFile(join(scratch, "granted-ran"), "utf8"), /Delivered-To: /);
    const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
    const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
    const metrics = await (await fetch(`http://${state.address}/metrics`, {
      headers: { authorization: `Bearer ${token}` },
    })).text();
    const count = Number(
      metrics.match(
        /^postern_hook_answers_refused_total\{hook="alias-resolve",kind="pipe"\} (\d+)$/m,
      )?.[1],
    );
    // Five refused answers so far, each retried at least once.
    assert.ok(count >= 5, `refusals counted: ${count}\n${metrics}`);
  });
});
