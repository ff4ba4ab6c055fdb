/**
 * Credentials are UTF-8 (RFC 4616 section 2 for PLAIN): AUTH credentials
 * that are not valid UTF-8 get 501 5.5.2 and never log in. Before, they
 * were decoded with U+FFFD in place of each bad byte, so a password holding
 * U+FFFD let in any client that sent any invalid bytes there instead.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { cleanup, freePort, type Server, startServer } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";

/** The password: valid UTF-8 holding U+FFFD twice. */
const PASSWORD = "pw-\u{FFFD}\u{FFFD}-1";
/** The same password with two invalid bytes where U+FFFD was. */
const BAD_BYTES = new Uint8Array([
  ...new TextEncoder().encode("pw-"),
  0xff,
  0xfe,
  ...new TextEncoder().encode("-1"),
]);

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function plain(user: string, password: Uint8Array): string {
  const enc = new TextEncoder();
  return base64(new Uint8Array([0, ...enc.encode(user), 0, ...password]));
}

describe("AUTH credential bytes", () => {
  let server: Server;
  let submission: number;
  before(async () => {
    submission = await freePort();
    server = await startServer({
      config: {
        "postern.yaml": `submission:\n  listen: ["127.0.0.1:${submission}"]\n`,
        "domains/example.test/users": `alice ${await hashPassword(PASSWORD)}\n`,
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  async function secured(): Promise<LineClient> {
    const client = await LineClient.open("127.0.0.1", submission);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.match(await client.command("STARTTLS"), /^220 /);
    await client.startTls();
    assert.match(await client.command("EHLO client.test"), /^250 /);
    return client;
  }

  it("refuses invalid UTF-8 in AUTH PLAIN and AUTH LOGIN with 501 5.5.2", async () => {
    const client = await secured();
    const bad = "501 5.5.2 Error: bad UTF-8 syntax";
    assert.equal(await client.command(`AUTH PLAIN ${plain("alice@example.test", BAD_BYTES)}`), bad);
    assert.match(await client.command("AUTH PLAIN"), /^334/);
    assert.equal(await client.command(plain("alice@example.test", BAD_BYTES)), bad);
    const user = base64(new TextEncoder().encode("alice@example.test"));
    assert.match(await client.command(`AUTH LOGIN ${user}`), /^334 /);
    assert.equal(await client.command(base64(BAD_BYTES)), bad);
    assert.match(await client.command("AUTH LOGIN"), /^334 /);
    assert.equal(await client.command(base64(new Uint8Array([0x61, 0xc0, 0x80]))), bad);
    // The session is still good, and the valid password logs in.
    const good = plain("alice@example.test", new TextEncoder().encode(PASSWORD));
    assert.match(await client.command(`AUTH PLAIN ${good}`), /^235 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    await server.waitForLog(/event=rejected stage=auth reason=bad_utf8 /);
  });

  it("refuses acting as another user (an authzid that is not the authcid) with 535, logged", async () => {
    // RFC 4616 section 2; before, this refusal left no line in the mail log.
    const client = await secured();
    const as = base64(
      new TextEncoder().encode(`bob@example.test\0alice@example.test\0${PASSWORD}`),
    );
    assert.equal(
      await client.command(`AUTH PLAIN ${as}`),
      "535 5.7.8 Authentication credentials invalid",
    );
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    const line = await server.waitForLog(/event=login .*result=refused reason=authzid_mismatch/);
    assert.match(line, /user=alice@example\.test/);
    assert.doesNotMatch(line, new RegExp(PASSWORD));
  });
});
