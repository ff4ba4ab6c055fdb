/**
 * Submission's refusals: AUTH replies with the codes RFC 4954 gives them,
 * logged; no cap of 10 commands before AUTH (the hard error limit bounds a
 * client instead); the failed-login limit holds against parallel guesses;
 * a user of an IDN domain may send as its own address.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/password.ts";
import { cleanup, freePort, type Server, startServer, tempDir, writeTree } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";
import { eventually, maildirMessages } from "./clients.ts";

/** The failed-login limit of this server. */
const LOGIN_LIMIT = 5;

describe("submission refusals", () => {
  let server: Server;
  let submission: number;
  before(async () => {
    const configDir = await tempDir("postern-config-");
    submission = await freePort();
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mx.example.test",
        "submission:",
        `  listen: ["127.0.0.1:${submission}"]`,
        "rate_limits:",
        `  failed_logins_per_ip_per_hour: ${LOGIN_LIMIT}`,
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword("alice-pass")}\n`,
      "domains/xn--bcher-kva.test/users": `hans ${await hashPassword("hans-pass")}\n`,
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
  });

  /** A session on the submission port that said EHLO `helo`, over TLS unless `plain`. */
  async function session(helo: string, plain = false): Promise<LineClient> {
    const client = await LineClient.open("127.0.0.1", submission);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command(`EHLO ${helo}`), /^250 /);
    if (plain) return client;
    assert.match(await client.command("STARTTLS"), /^220 /);
    await client.startTls();
    assert.match(await client.command(`EHLO ${helo}`), /^250 /);
    return client;
  }

  const plain = (user: string, password: string) => btoa(`\0${user}\0${password}`);

  it("lets a client send more than 10 commands before AUTH", async () => {
    // Before, smtp-server's cap: the tenth got "421 4.4.2 Error: too many
    // unauthenticated commands", with no log line.
    const client = await session("patient.test");
    for (let i = 0; i < 6; i++) {
      assert.match(await client.command("NOOP"), /^250 /);
      assert.match(await client.command("RSET"), /^250 /);
    }
    assert.match(
      await client.command(`AUTH PLAIN ${plain("alice@example.test", "alice-pass")}`),
      /^235 /,
    );
    assert.match(await client.command("MAIL FROM:<alice@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
  });

  it("lets a user of an IDN domain send as its address", async () => {
    // smtp-server hands the sender over as hans@bücher.test; before, 550 5.7.1.
    const client = await session("idn.test");
    assert.match(
      await client.command(`AUTH PLAIN ${plain("hans@xn--bcher-kva.test", "hans-pass")}`),
      /^235 /,
    );
    assert.match(await client.command("MAIL FROM:<hans@xn--bcher-kva.test>"), /^250 /);
    assert.match(await client.command("RCPT TO:<someone@remote.test>"), /^250 /);
    assert.match(await client.command("RSET"), /^250 /);
    assert.match(await client.command("MAIL FROM:<alice@example.test>"), /^550 5\.7\.1 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
  });

  it("keeps addresses written in A-labels as they came: the log, the Received field, the reply", async () => {
    // smtp-server turned them into U-labels (hans@bücher.test): stored so,
    // they made outbound delivery ask for SMTPUTF8 and bounce the message.
    const client = await session("idn-ascii.test");
    assert.match(
      await client.command(`AUTH PLAIN ${plain("hans@xn--bcher-kva.test", "hans-pass")}`),
      /^235 /,
    );
    assert.equal(
      await client.command("MAIL FROM:<hans@xn--bcher-kva.test>"),
      "250 2.1.0 Accepted",
    );
    assert.match(await client.command("RCPT TO:<Hans@XN--BCHER-KVA.test>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    const queued = await client.command("Subject: ascii only\r\n\r\nbody\r\n.");
    assert.match(queued, /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
    const line = await server.waitForLog(/event=queued .*helo=idn-ascii\.test /);
    assert.match(line, / from=<hans@xn--bcher-kva\.test> to=<Hans@XN--BCHER-KVA\.test> /);
    const stored = await eventually(
      async () => (await maildirMessages(server.dataDir, "xn--bcher-kva.test", "hans"))[0],
      10_000,
      "the message in hans's Maildir",
    );
    const header = stored.slice(0, stored.indexOf("\n\n"));
    assert.match(header, /for <Hans@XN--BCHER-KVA\.test>/);
    assert.doesNotMatch(header, /[^\n\r\t -~]/, header);
  });

  it("answers AUTH responses that cannot be decoded with 501 5.5.2, a cancel with 501 5.7.0", async () => {
    // RFC 4954 sections 4 and 6; before, 501 5.5.4, and nothing was logged.
    const client = await session("auth-syntax.test");
    assert.match(await client.command("AUTH PLAIN !!!notbase64!!!"), /^501 5\.5\.2 /);
    assert.match(await client.command("AUTH LOGIN"), /^334 /);
    assert.match(await client.command("%%%%"), /^501 5\.5\.2 /);
    assert.match(await client.command("AUTH LOGIN"), /^334 /);
    assert.match(await client.command("*"), /^501 5\.7\.0 /);
    assert.match(await client.command(`AUTH PLAIN ${btoa("no NULs here")}`), /^501 5\.5\.2 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
    await server.waitForLog(
      /event=rejected stage=auth reason=auth_aborted .*helo=auth-syntax\.test reply="501 5\.7\.0 /,
    );
    const reasons = server.mailLog.filter((l) => / helo=auth-syntax\.test /.test(l))
      .map((l) => / reason=(\S+) /.exec(l)?.[1]);
    assert.deepEqual(reasons, ["bad_base64", "bad_base64", "auth_aborted", "bad_syntax"]);
  });

  it("answers AUTH before STARTTLS with 538 5.7.11 and logs it", async () => {
    const client = await session("cleartext.test", true);
    assert.equal(
      await client.command("AUTH LOGIN"),
      "538 5.7.11 Error: Must issue a STARTTLS command first",
    );
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
    await server.waitForLog(
      /event=rejected stage=auth reason=tls_required .*helo=cleartext\.test /,
    );
  });

  it("logs and counts a flood of MAIL before AUTH (530) up to the hard error limit", async () => {
    const client = await session("anonymous.test");
    for (let i = 0; i < 20; i++) {
      assert.match(await client.command("MAIL FROM:<alice@example.test>"), /^530 5\.7\.0 /);
    }
    assert.match((await client.waitFor(/^421 /, client.lines.length - 1)) ?? "", /^421 4\.7\.0 /);
    await client.closed;
    const summary = await server.waitForLog(/event=session_refusals .*helo=anonymous\.test /);
    assert.match(summary, / rejected=20 unlogged=15 reason=too_many_errors errors=20 /);
  });

  it("checks no more wrong passwords than the limit, however many arrive at once", async () => {
    // Before, eight parallel guesses all had their password checked (535).
    const clients = await Promise.all(
      Array.from({ length: 8 }, (_, i) => session(`guess${i}.test`)),
    );
    const answers = await Promise.all(
      clients.map((c, i) => c.command(`AUTH PLAIN ${plain("alice@example.test", `guess-${i}`)}`)),
    );
    const checked = answers.filter((a) => a.startsWith("535 5.7.8 ")).length;
    const limited = answers.filter((a) => a.startsWith("454 4.7.0 ")).length;
    assert.equal(checked + limited, answers.length, answers.join("\n"));
    assert.ok(checked <= LOGIN_LIMIT, answers.join("\n"));
    for (const c of clients) c.close();
  });
});
