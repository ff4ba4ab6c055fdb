/**
 * Postern with a real Dovecot (a private instance, see
 * test/support/dovecot.ts): delivery over LMTP read back over IMAP, one
 * transaction per message and connections reused, per-recipient LMTP
 * replies (over quota: 5xx bounces, 4xx retried), RCPT checks in Dovecot's
 * userdb, submission logins through Dovecot's auth service, and Dovecot
 * stopped (454 for logins, mail kept and delivered once it is back).
 */

import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Dovecot, type DovecotUser, startDovecot } from "../support/dovecot.ts";
import {
  cleanup,
  eventually,
  freePort,
  queuedId,
  replies,
  run,
  type RunResult,
  type Server,
  startServer,
  submitMail,
  swaks,
} from "./harness.ts";

const USERS: DovecotUser[] = [
  { name: "alice@example.com", password: "alice-pw" },
  { name: "bob@example.com", password: "bob-pw" },
  // 1 KiB of storage: a larger message is over quota, refused for good (552 5.2.2)…
  { name: "full@example.com", password: "x", extra: ["userdb_quota_rule=*:storage=1"] },
  // …or, with quota_full_tempfail, for now (452 4.2.2).
  {
    name: "temp@example.com",
    password: "x",
    extra: ["userdb_quota_rule=*:storage=1", "userdb_quota_full_tempfail=yes"],
  },
];

/** postern.yaml for Dovecot's sockets; `submission` is the submission port. */
function config(dovecot: Dovecot, submission: number): string {
  return [
    "hostname: mx.example.com",
    "submission:",
    `  listen: ["127.0.0.1:${submission}"]`,
    "delivery:",
    `  lmtp: "unix:${dovecot.lmtp}"`,
    "  retry_initial: 1s",
    "  retry_max: 2s",
    "outbound:",
    // Long enough that the second message finds the first one's connection.
    "  connection_idle: 10m",
    "auth:",
    `  dovecot: "unix:${dovecot.authClient}"`,
    `  dovecot_userdb: "unix:${dovecot.authUserdb}"`,
    "rate_limits:",
    "  failed_logins_per_ip_per_hour: 3",
    "",
  ].join("\n");
}

/** The last server reply swaks printed before QUIT. */
const lastReply = (result: RunResult) => replies(result.stdout).at(-2) ?? "";
/** The reply to RCPT TO (the first reply after MAIL FROM's). */
const rcptReply = (result: RunResult) => {
  const all = replies(result.stdout);
  const mail = all.findIndex((r) => r.startsWith("250 2.1.0"));
  return all[mail + 1] ?? "";
};

/** Lines of Dovecot's log matching `pattern`. */
async function dovecotLines(dovecot: Dovecot, pattern: RegExp): Promise<string[]> {
  return (await dovecot.log()).split("\n").filter((l) => pattern.test(l));
}

describe("Dovecot: LMTP delivery and RCPT checks", () => {
  let dovecot: Dovecot;
  let server: Server;

  before(async () => {
    dovecot = await startDovecot(USERS);
    server = await startServer({
      config: {
        "postern.yaml": config(dovecot, await freePort()),
        "domains/example.com/.keep": "",
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await dovecot?.cleanup();
  });

  it("delivers a message to two users in one LMTP transaction; IMAP reads it back", async () => {
    const token = `lmtp-${crypto.randomUUID()}`;
    const result = await swaks(server, [
      "--from",
      "sender@example.org",
      "--to",
      "alice@example.com,bob@example.com",
      "--header",
      `Subject: ${token}`,
      "--body",
      `Hello over LMTP ${token}\n.leading dot stays`,
    ]);
    const qid = queuedId(result);
    await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=2 failed=0`));
    for (const [user, password] of [["alice", "alice-pw"], ["bob", "bob-pw"]] as const) {
      const messages = await dovecot.imapFetchAll(`${user}@example.com`, password);
      const message = messages.find((m) => m.includes(token));
      assert.ok(message, `${user} has the message over IMAP: ${messages.join("\n---\n")}`);
      assert.match(message, /^Return-Path: <sender@example\.org>\r\n/);
      assert.match(message, new RegExp(`\r\nHello over LMTP ${token}\r\n\\.leading dot stays`));
    }
    // Dovecot names the recipients of one transaction by one session ID
    // (the second with a ":R<n>" suffix).
    // Dovecot's log process may write a moment after the LMTP reply.
    const saved = await eventually(
      async () => {
        const lines = await dovecotLines(dovecot, /lmtp\((alice|bob)@example\.com\).*saved mail/);
        return lines.length >= 2 ? lines : undefined;
      },
      15_000,
      "Dovecot's log lines of the delivery",
    );
    const sessions = saved.map((l) => /<([A-Za-z0-9+/]+)(?::R\d+)?>: Info/.exec(l)?.[1]);
    assert.equal(saved.length, 2, saved.join("\n"));
    assert.equal(sessions[0], sessions[1], saved.join("\n"));
  });

  it("reuses the LMTP connection for the next message", async () => {
    const connects = async () =>
      (await dovecotLines(dovecot, /lmtp\(\d+\): Info: Connect from/)).length;
    const first = await swaks(server, ["--from", "s@example.org", "--to", "alice@example.com"]);
    await server.waitForLog(new RegExp(`qid=${queuedId(first)} event=completed sent=1`));
    const before = await eventually(
      async () => {
        const n = await connects();
        return n >= 1 ? n : undefined;
      },
      15_000,
      "Dovecot's log line of the first LMTP connection",
    );
    for (let i = 0; i < 3; i++) {
      const next = await swaks(server, ["--from", "s@example.org", "--to", "bob@example.com"]);
      await server.waitForLog(new RegExp(`qid=${queuedId(next)} event=completed sent=1`));
    }
    assert.equal(await connects(), before, "no new LMTP connection for three more messages");
  });

  it("refuses an unknown user at RCPT (550 5.1.1) after asking Dovecot's userdb", async () => {
    const unknown = await swaks(server, ["--from", "s@example.org", "--to", "nobody@example.com"]);
    assert.match(rcptReply(unknown), /^550 5\.1\.1 /);
    await server.waitForLog(/event=rejected .*reason=no_such_user/);
    // A suffix is taken off before the lookup, as for Postern's own users.
    const tagged = await swaks(server, [
      "--from",
      "s@example.org",
      "--to",
      "alice+news@example.com",
    ]);
    queuedId(tagged);
  });

  it("bounces a recipient over quota (552) and retries one whose quota is temporary (452)", async () => {
    const token = `quota-${crypto.randomUUID()}`;
    const result = await swaks(server, [
      "--from",
      "alice@example.com",
      "--to",
      "full@example.com,temp@example.com,bob@example.com",
      "--header",
      `Subject: ${token}`,
      "--body",
      `${token}\n${"x".repeat(76)}\n`.repeat(40),
    ]);
    const qid = queuedId(result);
    const log = async (rcpt: string, outcome: string) =>
      await server.waitForLog(
        new RegExp(`qid=${qid} event=delivery to=<${rcpt}@example\\.com> result=${outcome}`),
      );
    assert.match(await log("bob", "sent"), /result=sent/);
    assert.match(await log("full", "failed"), /5\.2\.2/);
    assert.match(await log("temp", "deferred"), /4\.2\.2/);
    // The sender is told about the failed one (an RFC 3464 report, delivered over LMTP too).
    const bounce = await eventually(
      async () =>
        (await dovecot.imapFetchAll("alice@example.com", "alice-pw")).find((m) =>
          m.includes("multipart/report") && m.includes("full@example.com")
        ),
      20_000,
      "the bounce in alice's INBOX",
    );
    assert.match(bounce, /5\.2\.2/);
    assert.doesNotMatch(bounce, /Final-Recipient: rfc822; ?temp@example\.com/);
    // The deferred one is retried, and delivered once its quota allows it.
    await eventually(
      () =>
        Promise.resolve(
          server.mailLog.filter((l) =>
              l.includes(`qid=${qid} event=delivery to=<temp@example.com> result=deferred`)
            ).length >= 2
            ? true
            : undefined,
        ),
      20_000,
      "a second attempt for temp@",
    );
    const users = USERS.map((u) =>
      u.name === "temp@example.com" ? { ...u, extra: ["userdb_quota_rule=*:storage=1M"] } : u
    );
    await writeFile(
      join(dovecot.dir, "passwd"),
      users.map((u) => `${u.name}:{PLAIN}${u.password}::::::${(u.extra ?? []).join(" ")}\n`)
        .join(""),
    );
    await log("temp", "sent");
    const delivered = await dovecot.imapFetchAll("temp@example.com", "x");
    assert.ok(delivered.some((m) => m.includes(token)), "temp@ got it on a retry");
  });
});

describe("Dovecot: submission logins", () => {
  let dovecot: Dovecot;
  let server: Server;
  let submission: number;

  before(async () => {
    dovecot = await startDovecot(USERS);
    submission = await freePort();
    server = await startServer({
      config: {
        "postern.yaml": config(dovecot, submission),
        // Known to Postern itself, so RCPT does not need Dovecot.
        "domains/example.com/users": "bob\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await dovecot?.cleanup();
  });

  it("accepts a Dovecot password (PLAIN and LOGIN) and refuses a wrong one with 535 5.7.8", async () => {
    const ok = await submitMail(
      submission,
      { user: "alice@example.com", password: "alice-pw" },
      "alice@example.com",
      ["bob@example.com"],
    );
    queuedId(ok);
    const login = await run("swaks", [
      "--server",
      `127.0.0.1:${submission}`,
      "--tls",
      "--auth",
      "LOGIN",
      "--auth-user",
      "bob@example.com",
      "--auth-password",
      "bob-pw",
      "--from",
      "bob@example.com",
      "--to",
      "alice@example.com",
    ]);
    queuedId(login);
    const bad = await submitMail(
      submission,
      { user: "alice@example.com", password: "wrong" },
      "alice@example.com",
      ["bob@example.com"],
    );
    assert.match(lastReply(bad), /^535 5\.7\.8 /);
    await server.waitForLog(/event=login .*user=alice@example\.com result=ok/);
    await server.waitForLog(/result=refused reason=bad_credentials/);
  });

  it("limits failed logins per client like the users files do (454 4.7.0)", async () => {
    // One failure so far (above); the limit is 3.
    for (let i = 0; i < 2; i++) {
      const bad = await submitMail(
        submission,
        { user: "bob@example.com", password: `guess-${i}` },
        "bob@example.com",
        ["alice@example.com"],
      );
      assert.match(lastReply(bad), /^535 5\.7\.8 /);
    }
    const limited = await submitMail(
      submission,
      { user: "bob@example.com", password: "bob-pw" },
      "bob@example.com",
      ["alice@example.com"],
    );
    assert.match(lastReply(limited), /^454 4\.7\.0 Too many failed logins/);
  });
});

describe("Dovecot: stopped", () => {
  let dovecot: Dovecot;
  let server: Server;
  let submission: number;

  before(async () => {
    dovecot = await startDovecot(USERS);
    submission = await freePort();
    server = await startServer({
      config: {
        "postern.yaml": config(dovecot, submission),
        "domains/example.com/users": "alice\n",
        // Role addresses exist whatever Dovecot says (see README "With Dovecot").
        "hooks/alias-exists.ts":
          'export default ({ address }: { address: string }): boolean => address.startsWith("abuse@");\n',
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await dovecot?.cleanup();
  });

  it("answers logins 454 4.7.0 and RCPT checks 451 4.3.0, keeps mail and delivers it when Dovecot is back", async () => {
    await dovecot.stop();
    const login = await submitMail(
      submission,
      { user: "alice@example.com", password: "alice-pw" },
      "alice@example.com",
      ["alice@example.com"],
    );
    assert.match(lastReply(login), /^454 4\.7\.0 /);
    await server.waitForLog(/event=login .*result=refused reason=auth_unavailable/);
    // A user only Dovecot knows cannot be checked now: try later, never 550.
    const unchecked = await swaks(server, ["--from", "s@example.org", "--to", "bob@example.com"]);
    assert.match(rcptReply(unchecked), /^451 4\.3\.0 /);
    // The alias-exists hook still has its say.
    const role = await swaks(server, [
      "--from",
      "s@example.org",
      "--to",
      "abuse@example.com",
      // No message: it would bounce to example.org, which is not on loopback.
      "--quit-after",
      "RCPT",
    ]);
    assert.match(rcptReply(role), /^250 /);
    // One Postern knows is taken, and waits in the queue.
    const token = `down-${crypto.randomUUID()}`;
    const kept = await swaks(server, [
      "--from",
      "s@example.org",
      "--to",
      "alice@example.com",
      "--header",
      `Subject: ${token}`,
    ]);
    const qid = queuedId(kept);
    await server.waitForLog(
      new RegExp(`qid=${qid} event=delivery to=<alice@example\\.com> result=deferred`),
    );
    await dovecot.start();
    await server.waitForLog(
      new RegExp(`qid=${qid} event=delivery to=<alice@example\\.com> result=sent`),
      30_000,
    );
    const messages = await dovecot.imapFetchAll("alice@example.com", "alice-pw");
    assert.equal(messages.filter((m) => m.includes(token)).length, 1, "delivered once");
    const again = await submitMail(
      submission,
      { user: "alice@example.com", password: "alice-pw" },
      "alice@example.com",
      ["alice@example.com"],
    );
    queuedId(again);
  });
});
