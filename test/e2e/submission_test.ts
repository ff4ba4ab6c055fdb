/**
 * Submission: AUTH PLAIN and LOGIN over STARTTLS and implicit TLS with
 * swaks, users managed with `postern user`, the sender check, relaying for
 * authenticated users only, failed-login limits, and the per-user message
 * rate limit.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  freePort,
  posternCommand,
  replies,
  run,
  type RunResult,
  type Server,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";

describe("submission", () => {
  let server: Server;
  let submission: number;
  let submissionTls: number;
  const postern = (words: string[], input?: string) => {
    const [cmd, ...args] = posternCommand([...words, "--config", server.configDir]);
    return run(cmd!, args, input);
  };
  const submit = (
    options: { port?: number; tls?: "starttls" | "implicit" | "none"; auth?: string[] },
    from: string,
    to: string,
  ): Promise<RunResult> =>
    run("swaks", [
      "--server",
      `127.0.0.1:${options.port ?? submission}`,
      "--timeout",
      "20",
      "--from",
      from,
      "--to",
      to,
      ...(options.tls === "implicit" ? ["--tlsc"] : options.tls === "none" ? [] : ["--tls"]),
      ...(options.auth ?? []),
    ]);
  const last = (result: RunResult) => replies(result.stdout).at(-2) ?? "";
  /** swaks arguments that log in as alice. */
  const asAlice = (password = "s3cret-pass", method = "PLAIN") => [
    "--auth",
    method,
    "--auth-user",
    "alice@example.test",
    "--auth-password",
    password,
  ];

  before(async () => {
    const configDir = await tempDir("postern-config-");
    submission = await freePort();
    submissionTls = await freePort();
    await writeTree(configDir, {
      "postern.yaml": [
        "submission:",
        `  listen: ["127.0.0.1:${submission}"]`,
        `  listen_tls: ["127.0.0.1:${submissionTls}"]`,
        "rate_limits:",
        "  failed_logins_per_ip_per_hour: 3",
        "  messages_per_user_per_hour: 4",
        "",
      ].join("\n"),
      "domains/example.test/users": "bob\n",
      "domains/other.test/users": "carol\n",
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
  });

  it("postern user add takes the password from stdin, never argv; list and remove", async () => {
    const added = await postern(["user", "add", "Alice@Example.test"], "s3cret-pass\n");
    assert.equal(added.code, 0, added.stderr);
    const text = await (await import("node:fs/promises")).readFile(
      join(server.configDir, "domains/example.test/users"),
      "utf8",
    );
    assert.match(text, /^bob$/m);
    assert.match(text, /^alice \$scrypt\$ln=15,r=8,p=1\$/m);
    assert.ok(!text.includes("s3cret-pass"));
    const listed = await postern(["user", "list", "example.test"]);
    assert.match(listed.stdout, /alice@example\.test\s+can log in/);
    assert.match(listed.stdout, /bob@example\.test\s+mailbox only/);
    const empty = await postern(["user", "add", "dave@example.test"], "\n");
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /empty password/);
    assert.equal((await postern(["user", "add", "temp@example.test"], "pw-for-temp\n")).code, 0);
    assert.equal((await postern(["user", "remove", "temp@example.test"])).code, 0);
    assert.equal((await postern(["user", "remove", "temp@example.test"])).code, 1);
  });

  it("accepts AUTH PLAIN over STARTTLS and relays to any domain", async () => {
    const sent = await eventually(
      async () => {
        const r = await submit(
          {
            auth: asAlice(),
          },
          "alice@example.test",
          "someone@remote.test",
        );
        return r.code === 0 ? r : undefined;
      },
      10_000,
      "alice's login (the users file is reloaded)",
    );
    assert.ok(replies(sent.stdout).some((l) => l.startsWith("235 ")));
    assert.match(last(sent), /^250 2\.0\.0 Ok: queued as/);
    await server.waitForLog(/event=login .*user=alice@example\.test result=ok/);
  });

  it("accepts AUTH LOGIN over implicit TLS (port 465 style)", async () => {
    const sent = await submit(
      {
        port: submissionTls,
        tls: "implicit",
        auth: asAlice("s3cret-pass", "LOGIN"),
      },
      "alice@example.test",
      "bob@example.test",
    );
    assert.equal(sent.code, 0, sent.stdout);
  });

  it("offers no AUTH before TLS, refuses it with 538 5.7.11, offers it after STARTTLS", async () => {
    const client = await LineClient.open("127.0.0.1", submission);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    /** The keywords of an EHLO reply (the lines after the first). */
    const keywords = async () => {
      const from = client.lines.length;
      assert.match(await client.command("EHLO client.test"), /^250 /);
      return client.lines.slice(from + 1).map((l) => l.slice(4));
    };
    const plain = await keywords();
    assert.ok(plain.includes("STARTTLS"), plain.join("\n"));
    assert.ok(!plain.some((k) => /^AUTH\b/i.test(k)), plain.join("\n"));
    // RFC 4954 section 4: a password is never taken in clear text; section
    // 6 gives 538 the enhanced code 5.7.11 (smtp-server said 5.7.0).
    const credentials = btoa("\0alice@example.test\0s3cret-pass");
    assert.equal(
      await client.command(`AUTH PLAIN ${credentials}`),
      "538 5.7.11 Error: Must issue a STARTTLS command first",
    );
    assert.match(await client.command("STARTTLS"), /^220 /);
    await client.startTls();
    const secure = await keywords();
    assert.ok(secure.includes("AUTH PLAIN LOGIN"), secure.join("\n"));
    assert.ok(!secure.includes("STARTTLS"), secure.join("\n"));
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("needs AUTH before MAIL", async () => {
    const anonymous = await submit({}, "alice@example.test", "someone@remote.test");
    assert.match(
      replies(anonymous.stdout).find((l) => /^5\d\d /.test(l)) ?? "",
      /^530 5\.7\.0 /,
    );
  });

  it("refuses a sender outside the user's domain with 550 5.7.1", async () => {
    const sent = await submit(
      {
        auth: asAlice(),
      },
      "ceo@other.test",
      "someone@remote.test",
    );
    assert.match(
      replies(sent.stdout).find((l) => l.startsWith("550")) ?? "",
      /^550 5\.7\.1 .*not yours/,
    );
  });

  it("limits messages per user per hour with 451 4.7.1", async () => {
    // Two sent above; two more fit in the limit of 4.
    const auth = asAlice();
    for (let i = 0; i < 2; i++) {
      assert.equal((await submit({ auth }, "alice@example.test", "x@remote.test")).code, 0);
    }
    const over = await submit({ auth }, "alice@example.test", "x@remote.test");
    assert.match(
      replies(over.stdout).find((l) => /^4\d\d /.test(l)) ?? "",
      /^451 4\.7\.1 Too many messages from your account/,
    );
  });

  it("refuses bad credentials with 535 5.7.8, then every attempt once the limit is reached", async () => {
    const wrong = asAlice("nope");
    for (let i = 0; i < 3; i++) {
      const r = await submit({ auth: wrong }, "alice@example.test", "x@remote.test");
      assert.ok(replies(r.stdout).some((l) => l.startsWith("535 5.7.8")), r.stdout);
    }
    const right = asAlice();
    const locked = await submit({ auth: right }, "alice@example.test", "x@remote.test");
    assert.ok(replies(locked.stdout).some((l) => l.startsWith("454 4.7.0")), locked.stdout);
    await server.waitForLog(/event=login .*result=refused reason=login_rate/);
    // Port 25 never offers AUTH, and still does not relay.
    const mx = await run("swaks", [
      "--server",
      `127.0.0.1:${server.port}`,
      "--from",
      "alice@example.test",
      "--to",
      "x@remote.test",
    ]);
    assert.ok(replies(mx.stdout).some((l) => l.startsWith("550 5.7.1")));
  });
});
