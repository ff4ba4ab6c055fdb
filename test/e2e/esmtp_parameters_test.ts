/**
 * MAIL FROM and RCPT TO parameters (RFC 5321 sections 4.1.1.11 and 4.2.4):
 * those of an extension the listener did not offer, and unknown ones, get
 * 555 5.5.4 naming the parameter; those of the offered extensions (SIZE,
 * 8BITMIME's BODY, SMTPUTF8; AUTH= once logged in on submission) are
 * taken. Before, every parameter got 250 and was ignored: a client's
 * REQUIRETLS or DSN request was silently dropped.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { cleanup, freePort, type Server, startServer } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";

describe("ESMTP parameters of MAIL FROM and RCPT TO", () => {
  let server: Server;
  let submission: number;
  before(async () => {
    submission = await freePort();
    server = await startServer({
      config: {
        "postern.yaml": `submission:\n  listen: ["127.0.0.1:${submission}"]\n`,
        "domains/example.test/users": `alice\nbob ${await hashPassword("pw-bob-1")}\n`,
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  async function session(port: number, tls = false): Promise<LineClient> {
    const client = await LineClient.open("127.0.0.1", port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("EHLO client.test"), /^250 /);
    if (tls) {
      assert.match(await client.command("STARTTLS"), /^220 /);
      await client.startTls();
      assert.match(await client.command("EHLO client.test"), /^250 /);
    }
    return client;
  }

  it("after HELO, which offers no extension, refuses every parameter with 555 5.5.4", async () => {
    // Before, SIZE, BODY and SMTPUTF8 were taken after HELO, and a message
    // from a non-ASCII sender was queued "with UTF8SMTP".
    const client = await LineClient.open("127.0.0.1", server.port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("HELO client.test"), /^250 /);
    for (const [params, named] of [["SIZE=100", "SIZE"], ["BODY=8BITMIME", "BODY"]]) {
      assert.equal(
        await client.command(`MAIL FROM:<s@client.test> ${params}`),
        `555 5.5.4 Unsupported parameter: ${named}`,
      );
    }
    assert.match(
      await client.command("MAIL FROM:<\u00fc@client.test> SMTPUTF8"),
      /^555 5\.5\.4 Unsupported parameter: SMTPUTF8$/,
    );
    assert.match(await client.command("MAIL FROM:<s@client.test>"), /^250 /);
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("answers a bare BODY beside an unsupported FOO with the 555 for FOO, not 451", async () => {
    // With smtp-server's checks skipped, its code that applies them threw
    // on a BODY without a value: 451 4.3.0, "internal server error".
    const client = await session(server.port);
    assert.equal(
      await client.command("MAIL FROM:<s@client.test> BODY FOO=1"),
      "555 5.5.4 Unsupported parameter: FOO",
    );
    assert.match(await client.command("MAIL FROM:<s@client.test> BODY"), /^501 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    const helo = await LineClient.open("127.0.0.1", server.port);
    assert.match((await helo.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await helo.command("HELO client.test"), /^250 /);
    assert.equal(
      await helo.command("MAIL FROM:<s@client.test> BODY"),
      "555 5.5.4 Unsupported parameter: BODY",
    );
    assert.match(await helo.command("QUIT"), /^221 /);
    helo.close();
  });

  it("refuses REQUIRETLS and DSN parameters with 555 5.5.4, with or without a value, on a plain connection", async () => {
    // smtp-server answered first: REQUIRETLS on a plain connection got 530
    // (logged as auth_required), a DSN parameter without a value 501.
    const client = await session(server.port);
    for (const params of ["REQUIRETLS", "RET", "ENVID", "RET=FULL"]) {
      const named = params.split("=")[0];
      assert.equal(
        await client.command(`MAIL FROM:<req@client.test> ${params}`),
        `555 5.5.4 Unsupported parameter: ${named}`,
      );
    }
    assert.match(await client.command("MAIL FROM:<req@client.test>"), /^250 /);
    for (const params of ["NOTIFY", "ORCPT"]) {
      assert.equal(
        await client.command(`RCPT TO:<alice@example.test> ${params}`),
        `555 5.5.4 Unsupported parameter: ${params}`,
      );
    }
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    const line = await server.waitForLog(
      /event=rejected stage=mail reason=\S+ .*from=<req@client\.test> reply="555 5\.5\.4 Unsupported parameter: REQUIRETLS"/,
    );
    assert.match(line, / reason=unsupported_parameter /);
  });

  it("refuses a parameter without a name with 501 5.5.4 (smtp-server dropped it)", async () => {
    const client = await session(server.port);
    const syntax = "501 5.5.4 Syntax error in parameters: one has no name";
    assert.equal(await client.command("MAIL FROM:<s@client.test> =x"), syntax);
    assert.equal(await client.command("MAIL FROM:<s@client.test> SIZE=10 ="), syntax);
    assert.match(await client.command("MAIL FROM:<s@client.test> SIZE=10"), /^250 /);
    assert.equal(await client.command("RCPT TO:<alice@example.test> =y"), syntax);
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("a refused MAIL FROM with SMTPUTF8 does not declare it for the next transaction", async () => {
    const client = await session(server.port);
    assert.match(await client.command("MAIL FROM:<s@client.test> SMTPUTF8 FOO=1"), /^555 /);
    assert.match(await client.command("MAIL FROM:<s@client.test>"), /^250 /);
    assert.match(
      await client.command("RCPT TO:<\u00fcser@example.test>"),
      /^553 5\.6\.7 /,
    );
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("refuses unknown and unoffered MAIL FROM parameters on port 25 with 555 5.5.4", async () => {
    const client = await session(server.port);
    const refused: Array<[string, string]> = [
      ["FOO=BAR", "FOO"],
      ["XYZ", "XYZ"],
      ["8BITMTUTF8", "8BITMTUTF8"],
      ["RET=FULL ENVID=x", "RET"],
      // Port 25 never offers AUTH (RFC 4954 section 5).
      ["AUTH=<>", "AUTH"],
    ];
    for (const [params, named] of refused) {
      assert.equal(
        await client.command(`MAIL FROM:<s@client.test> ${params}`),
        `555 5.5.4 Unsupported parameter: ${named}`,
        params,
      );
    }
    // The offered ones are taken, and the transaction goes on.
    assert.match(
      await client.command("MAIL FROM:<s@client.test> SIZE=100 BODY=8BITMIME SMTPUTF8"),
      /^250 /,
    );
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    const line = await server.waitForLog(
      /event=rejected stage=mail reason=unsupported_parameter .*Unsupported parameter: FOO"$/,
    );
    assert.match(line, / from=<s@client\.test> reply="555 5\.5\.4 Unsupported parameter: FOO"$/);
  });

  it("refuses every RCPT TO parameter: DSN is not offered", async () => {
    const client = await session(server.port);
    assert.match(await client.command("MAIL FROM:<s@client.test>"), /^250 /);
    assert.equal(
      await client.command("RCPT TO:<alice@example.test> NOTIFY=SUCCESS ORCPT=rfc822;x@y"),
      "555 5.5.4 Unsupported parameter: NOTIFY",
    );
    assert.equal(
      await client.command("RCPT TO:<alice@example.test> FOO=BAR"),
      "555 5.5.4 Unsupported parameter: FOO",
    );
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    await server.waitForLog(
      /event=rejected stage=rcpt reason=unsupported_parameter .*to=<alice@example\.test> /,
    );
  });

  it("refuses REQUIRETLS after STARTTLS: it is not offered, so it cannot be honoured", async () => {
    const client = await session(server.port, true);
    assert.ok(!client.lines.some((l) => /^250[- ]REQUIRETLS/.test(l)), client.lines.join("\n"));
    assert.equal(
      await client.command("MAIL FROM:<s@client.test> REQUIRETLS"),
      "555 5.5.4 Unsupported parameter: REQUIRETLS",
    );
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });

  it("takes AUTH= on submission once logged in, and still refuses the unknown", async () => {
    const client = await session(submission, true);
    const plain = btoa("\0bob@example.test\0pw-bob-1");
    assert.match(await client.command(`AUTH PLAIN ${plain}`), /^235 /);
    assert.equal(
      await client.command("MAIL FROM:<bob@example.test> FOO=BAR"),
      "555 5.5.4 Unsupported parameter: FOO",
    );
    assert.match(await client.command("MAIL FROM:<bob@example.test> AUTH=<> SIZE=10"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
  });
});
