/**
 * Every refusal a session gets is in the mail log, whoever made it up:
 * Postern's handlers, the connection, or smtp-server itself (syntax errors,
 * a declared SIZE over the limit, commands out of sequence). A session's
 * first 5 get a line each; the rest are counted, and a session cut off at
 * the hard error limit ends with one summary line. Also the replies that
 * smtp-server gave wrong codes or none: an over-long line, BDAT, a
 * recipient that asks for routing in a quoted local part.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cleanup, type Server, startServer } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";

describe("refusals", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "hostname: mx.example.test\nsmtp:\n  max_message_size: 10000\n",
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  /** A greeted session that said EHLO `helo` (which tells its log lines apart). */
  async function session(helo: string): Promise<LineClient> {
    const client = await LineClient.open(server.host, server.port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command(`EHLO ${helo}`), /^250 /);
    return client;
  }

  /** The mail log lines of the session that said EHLO `helo`. */
  function linesOf(helo: string): string[] {
    const escaped = helo.replace(/\./g, "\\.");
    const line = server.mailLog.find((l) => new RegExp(` helo=${escaped}( |$)`).test(l));
    const id = line && / session=(\S+) /.exec(line)?.[1];
    assert.ok(id, `no log line of ${helo}`);
    return server.mailLog.filter((l) => l.includes(` session=${id} `));
  }

  /**
   * Sends `bad(i)` until the hard error limit (20) ends the session; checks
   * every reply, the 421 4.7.0, and the log: 5 lines of `stage`/`reason`,
   * then one summary with all 20 counted.
   */
  async function flood(
    helo: string,
    setup: string[],
    bad: (i: number) => string,
    expected: RegExp,
    stage: string,
    reason: string,
  ): Promise<void> {
    const client = await session(helo);
    for (const line of setup) assert.match(await client.command(line), /^250 /, line);
    for (let i = 0; i < 20; i++) {
      assert.match(await client.command(bad(i)), expected, `command ${i + 1}`);
    }
    assert.match((await client.waitFor(/^421 /, client.lines.length - 1)) ?? "", /^421 4\.7\.0 /);
    await client.closed;
    const escaped = helo.replace(/\./g, "\\.");
    const summary = await server.waitForLog(
      new RegExp(`event=session_refusals .*helo=${escaped} `),
    );
    assert.match(summary, / rejected=20 unlogged=15 reason=too_many_errors errors=20 /);
    const rejected = linesOf(helo).filter((l) => / event=rejected /.test(l));
    assert.equal(rejected.length, 5, rejected.join("\n"));
    for (const line of rejected) {
      assert.match(line, new RegExp(` stage=${stage} reason=${reason} `), line);
      assert.match(line, / reply="[45]\d\d [245]\.\d+\.\d+ /, line);
    }
  }

  it("logs and counts a flood of unknown commands (smtp-server's 500)", async () => {
    await flood(
      "unknown.flood.test",
      [],
      (i) => `FOO${i}`,
      /^500 5\.5\.2 /,
      "command",
      "unknown_command",
    );
  });

  it("logs and counts a flood of recipients of bad syntax (smtp-server's 501)", async () => {
    await flood(
      "syntax.flood.test",
      ["MAIL FROM:<s@flood.test>"],
      (i) => `RCPT TO:<bad${i}>`,
      /^501 5\.1\.3 /,
      "rcpt",
      "bad_syntax",
    );
  });

  it("logs and counts a flood of MAIL FROM with SIZE over the limit (smtp-server's 552)", async () => {
    await flood(
      "size.flood.test",
      [],
      () => "MAIL FROM:<s@flood.test> SIZE=99999999",
      /^552 5\.3\.4 /,
      "mail",
      "message_too_big",
    );
  });

  it("refuses routing in a quoted local part with 550 5.7.1, logged", async () => {
    // README, Recipients and aliases; before, smtp-server's 501 5.1.3, not logged.
    const client = await session("routing.test");
    assert.match(await client.command("MAIL FROM:<s@routing.test>"), /^250 /);
    assert.equal(
      await client.command('RCPT TO:<"victim@remote.invalid"@example.test>'),
      "550 5.7.1 Relaying denied: sender-specified routing is not allowed",
    );
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
    const line = await server.waitForLog(
      /event=rejected stage=rcpt reason=routing_denied .*helo=routing\.test /,
    );
    // The line names the recipient refused, quoted as the client wrote it.
    assert.match(line, /to="<\\"victim@remote\.invalid\\"@example\.test>"/);
  });

  it("answers BDAT with 554 5.5.0 and closes before its chunk arrives", async () => {
    // RFC 3030 section 2: the chunk follows without waiting for a reply;
    // before, BDAT got 500 and a chunk sent later ran as commands.
    const client = await session("bdat.test");
    assert.match(await client.command("MAIL FROM:<s@bdat.test>"), /^250 /);
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    assert.equal(
      await client.command("BDAT 86 LAST"),
      "554 5.5.0 Error: SMTP protocol synchronization",
    );
    await client.closed;
    await server.waitForLog(/event=rejected stage=data reason=bdat .*helo=bdat\.test /);
  });

  it("answers an over-long line with 500 5.5.2, logs it, and reads on", async () => {
    const client = await session("long.test");
    assert.equal(
      await client.command(`NOOP ${"a".repeat(2044)}`),
      "500 5.5.2 Error: line too long",
    );
    assert.match(await client.command(`NOOP ${"a".repeat(2043)}`), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
    await server.waitForLog(/event=rejected stage=command reason=line_too_long .*helo=long\.test /);
  });
});
