/**
 * "Port 25 never offers AUTH and never relays", also after STARTTLS and
 * also for a client holding a valid submission login: the same credentials
 * that log in and relay on the submission listener get a refusal on port 25,
 * before and after TLS, and mail for a remote domain is refused there.
 *
 * Both listeners take port 0; the `event=listening` lines say which ports
 * the kernel gave (port 25's first, then submission's).
 */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { LineClient } from "../support/smtp_lines.ts";
import { listenAddresses, portOf } from "../support/listen_addresses.ts";
import {
  cleanup,
  posternCommand,
  replies,
  run,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

const USER = "alice@example.test";
const PASSWORD = "p25-Valid-Login-7q";

/** Sessions opened by the current test, closed after it (also when it fails). */
const opened: LineClient[] = [];

/** An open session that has read the greeting. */
async function open(port: number): Promise<LineClient> {
  const client = await LineClient.open("127.0.0.1", port);
  opened.push(client);
  assert.match((await client.waitFor(/^220 /)) ?? "(no greeting)", /^220 /);
  return client;
}

/** Sends EHLO; returns the keywords of the 250 reply (the lines after the first). */
async function ehlo(client: LineClient): Promise<string[]> {
  const from = client.lines.length;
  assert.match(await client.command("EHLO client.example.net"), /^250 /);
  return client.lines.slice(from + 1).map((l) => l.slice(4));
}

/** Upgrades the session with STARTTLS. */
async function startTls(client: LineClient): Promise<void> {
  assert.match(await client.command("STARTTLS"), /^220 /);
  await client.startTls();
}

const plainCredentials = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");

describe("port 25 and AUTH", () => {
  let server: Server;
  let submission: number;

  before(async () => {
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mx.example.test",
        "submission:",
        '  listen: ["127.0.0.1:0"]',
        "",
      ].join("\n"),
      "domains/example.test/users": "bob\n",
    });
    // The login exists before the server starts: no reload to wait for.
    const [cmd, ...args] = posternCommand(["user", "add", USER, "--config", configDir]);
    const added = await run(cmd!, args, `${PASSWORD}\n`);
    assert.equal(added.code, 0, added.stderr);
    server = await startServer({ configDir });
    const [mx, sub] = await listenAddresses(server, 2);
    assert.equal(portOf(mx!), server.port);
    submission = portOf(sub!);
  });
  afterEach(() => {
    for (const client of opened.splice(0)) client.close();
  });
  after(() => cleanup(server));

  it("the login is valid: on submission it logs in and relays", async () => {
    // The control for the tests below: these credentials are good enough to
    // relay where AUTH belongs.
    const client = await open(submission);
    await ehlo(client);
    await startTls(client);
    assert.ok((await ehlo(client)).includes("AUTH PLAIN LOGIN"));
    assert.match(await client.command(`AUTH PLAIN ${plainCredentials}`), /^235 /);
    assert.match(await client.command(`MAIL FROM:<${USER}>`), /^250 /);
    assert.match(await client.command("RCPT TO:<someone@remote.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
  });

  it("before STARTTLS: no AUTH offered, AUTH refused", async () => {
    const client = await open(server.port);
    const keywords = await ehlo(client);
    assert.ok(keywords.includes("STARTTLS"), keywords.join("\n"));
    assert.ok(!keywords.some((k) => /^AUTH\b/i.test(k)), keywords.join("\n"));
    assert.match(await client.command(`AUTH PLAIN ${plainCredentials}`), /^5\d\d /);
    assert.match(await client.command("QUIT"), /^221 /);
  });

  it("after STARTTLS: no AUTH offered, PLAIN and LOGIN refused, no relaying", async () => {
    const client = await open(server.port);
    await ehlo(client);
    await startTls(client);
    const keywords = await ehlo(client);
    // The reply is a real EHLO reply (it lists extensions), only without AUTH.
    assert.ok(keywords.includes("PIPELINING"), keywords.join("\n"));
    assert.ok(!keywords.includes("STARTTLS"), keywords.join("\n"));
    assert.ok(!keywords.some((k) => /^AUTH\b/i.test(k)), keywords.join("\n"));

    const plain = await client.command(`AUTH PLAIN ${plainCredentials}`);
    assert.match(plain, /^5\d\d /, `AUTH PLAIN on port 25 got: ${plain}`);
    const login = await client.command("AUTH LOGIN");
    assert.match(login, /^5\d\d /, `AUTH LOGIN on port 25 got: ${login}`);
    // Had LOGIN been taken, these two lines would be its user and password.
    const user = await client.command(Buffer.from(USER).toString("base64"));
    assert.doesNotMatch(user, /^(235|334) /);
    const pass = await client.command(Buffer.from(PASSWORD).toString("base64"));
    assert.doesNotMatch(pass, /^(235|334) /);

    assert.match(await client.command(`MAIL FROM:<${USER}>`), /^250 /);
    assert.match(await client.command("RCPT TO:<someone@remote.test>"), /^550 5\.7\.1 /);
    // The session works for what port 25 is for: mail for a local user.
    assert.match(await client.command("RCPT TO:<bob@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
  });

  it("swaks with the valid login over STARTTLS gets no AUTH and queues nothing", async () => {
    const r = await swaks(server, [
      "--tls",
      "--auth",
      "PLAIN",
      "--auth-user",
      USER,
      "--auth-password",
      PASSWORD,
      "--from",
      USER,
      "--to",
      "someone@remote.test",
    ]);
    const lines = replies(r.stdout);
    assert.notEqual(r.code, 0, r.stdout);
    assert.ok(lines.some((l) => l.startsWith("220 ") && /TLS/i.test(l)), r.stdout);
    assert.ok(!lines.some((l) => l.startsWith("235")), r.stdout);
    assert.ok(!lines.some((l) => /queued as/.test(l)), r.stdout);
  });
});
