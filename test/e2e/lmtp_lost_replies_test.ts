/**
 * LMTP delivery to a mail store that dies halfway through its replies to
 * the data, end to end: Postern delivers a domain's mailboxes to a scripted
 * LMTP server on loopback (test/support/fake_lmtp.ts) that says 250 for
 * the first recipients of a message, then hangs up before the others'
 * replies; on the next attempt it behaves. A 250 already given is final
 * for its recipient (RFC 2033 section 4.2), so each mailbox gets the
 * message once: the retry carries only the recipients left without a
 * reply, for a plain mailbox and for an alias's members alike. A mailbox
 * the store refused at RCPT keeps that refusal: it bounces at once, and is
 * not asked again.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FakeMx } from "../support/fake_mx.ts";
import { lmtpDialogue } from "../support/fake_lmtp.ts";
import { cleanup, eventually, queuedId, type Server, startServer, swaks } from "./harness.ts";

/** A mail log line of message `qid`. */
function logOf(server: Server, qid: string, what: string): Promise<string> {
  return server.waitForLog(new RegExp(`qid=${qid} ${what}`), 40_000);
}

describe("LMTP: a server that dies after some of its replies to the data", () => {
  let lmtp: FakeMx;
  let server: Server;
  /** Per Subject token: how many recipients get a 250 before the first connection dies. */
  const dieAfter = new Map<string, number>();
  /** Per Subject token: the copies stored per mailbox (one per 250 the server gave). */
  const stored = new Map<string, Record<string, number>>();

  before(async () => {
    lmtp = await FakeMx.start(
      "127.0.0.1",
      0,
      lmtpDialogue({
        // A mailbox Postern lists and the store no longer has.
        rcpt: (address) =>
          address === "dave@example.com"
            ? "550 5.1.1 <dave@example.com> no such user"
            : "250 2.1.5 ok",
        afterData: (message) => {
          const token = /^Subject: (\S+)/m.exec(message.data)?.[1] ?? "";
          const copies = stored.get(token) ?? {};
          stored.set(token, copies);
          // The first time a message comes, only its first recipients are answered.
          const answered = dieAfter.get(token) ?? message.to.length;
          dieAfter.delete(token);
          return message.to.slice(0, answered).map((address) => {
            copies[address] = (copies[address] ?? 0) + 1;
            return `250 2.0.0 <${address}> saved`;
          });
        },
      }),
    );
    server = await startServer({
      config: {
        "postern.yaml": [
          "hostname: mx.example.com",
          "delivery:",
          "  retry_initial: 1s",
          "  retry_max: 2s",
          "domains:",
          `  example.com: { delivery: { lmtp: "127.0.0.1:${lmtp.port}" } }`,
          "",
        ].join("\n"),
        "domains/example.com/users": "alice\nbob\ncarol\ndave\nerin\nfrank\ngrace\nsender\n",
        "domains/example.com/aliases": "team: frank, grace\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await lmtp?.close();
  });

  it("delivers each mailbox once: the 250s before the close are final, the rest are retried", {
    timeout: 60_000,
  }, async () => {
    const token = `lost-${crypto.randomUUID()}`;
    dieAfter.set(token, 2);
    const qid = queuedId(
      await swaks(server, [
        "--from",
        "sender@example.org",
        "--to",
        "alice@example.com,bob@example.com,carol@example.com",
        "--header",
        `Subject: ${token}`,
      ]),
    );
    await logOf(server, qid, "event=completed sent=3 failed=0");
    assert.deepEqual(
      stored.get(token),
      { "alice@example.com": 1, "bob@example.com": 1, "carol@example.com": 1 },
      lmtp.transcript,
    );
    // The first attempt: alice and bob were answered, carol was not.
    assert.match(
      await logOf(server, qid, "event=delivery to=<alice@example\\.com> "),
      /result=sent/,
    );
    assert.match(await logOf(server, qid, "event=delivery to=<bob@example\\.com> "), /result=sent/);
    assert.match(
      await logOf(server, qid, "event=delivery to=<carol@example\\.com> "),
      /result=deferred/,
    );
    // The retry's transaction had carol alone.
    const retry = lmtp.connections.flatMap((c) => c.messages).filter((m) => m.data.includes(token));
    assert.deepEqual(retry.map((m) => m.to), [
      ["alice@example.com", "bob@example.com", "carol@example.com"],
      ["carol@example.com"],
    ]);
  });

  it("records an alias's members answered before the close as delivered, and retries the rest", {
    timeout: 60_000,
  }, async () => {
    const token = `alias-${crypto.randomUUID()}`;
    dieAfter.set(token, 2);
    const qid = queuedId(
      await swaks(server, [
        "--from",
        "sender@example.org",
        "--to",
        "erin@example.com,team@example.com",
        "--header",
        `Subject: ${token}`,
      ]),
    );
    await logOf(server, qid, "event=completed sent=2 failed=0");
    assert.deepEqual(
      stored.get(token),
      { "erin@example.com": 1, "frank@example.com": 1, "grace@example.com": 1 },
      lmtp.transcript,
    );
    assert.match(
      await logOf(server, qid, "event=delivery to=<erin@example\\.com> "),
      /result=sent/,
    );
    // team@ reached frank in the first attempt, and waited for grace.
    assert.match(
      await logOf(server, qid, "event=delivery to=<team@example\\.com> "),
      /result=deferred/,
    );
  });

  it("bounces a mailbox refused at RCPT at once, also when the connection dies after the data", {
    timeout: 60_000,
  }, async () => {
    const token = `refused-${crypto.randomUUID()}`;
    dieAfter.set(token, 1);
    const qid = queuedId(
      await swaks(server, [
        "--from",
        "sender@example.com",
        "--to",
        "alice@example.com,dave@example.com,carol@example.com",
        "--header",
        `Subject: ${token}`,
      ]),
    );
    await logOf(server, qid, "event=completed sent=2 failed=1");
    // The first attempt: alice answered, dave refused at RCPT, carol lost.
    assert.match(
      await logOf(server, qid, "event=delivery to=<alice@example\\.com> "),
      /result=sent/,
    );
    const dave = await logOf(server, qid, "event=delivery to=<dave@example\\.com> ");
    assert.match(dave, /result=failed/);
    assert.match(dave, /5\.1\.1/);
    assert.match(
      await logOf(server, qid, "event=delivery to=<carol@example\\.com> "),
      /result=deferred/,
    );
    assert.deepEqual(
      stored.get(token),
      { "alice@example.com": 1, "carol@example.com": 1 },
      lmtp.transcript,
    );
    // dave was asked once; the first transaction had alice and carol
    // (dave refused at RCPT), the retry's carol alone.
    const asked = lmtp.connections.flatMap((c) => c.log)
      .filter((line) => line.startsWith("C: RCPT TO:<dave@example.com>"));
    assert.equal(asked.length, 1, lmtp.transcript);
    const sent = lmtp.connections.flatMap((c) => c.messages).filter((m) =>
      m.data.includes(`Subject: ${token}`) && !m.to.includes("sender@example.com")
    );
    assert.deepEqual(sent.map((m) => m.to), [
      ["alice@example.com", "carol@example.com"],
      ["carol@example.com"],
    ]);
    // The sender is told about dave.
    const bounce = await eventually(
      () =>
        Promise.resolve(
          lmtp.connections.flatMap((c) => c.messages).find((m) =>
            m.to.includes("sender@example.com") && m.data.includes("dave@example.com")
          ),
        ),
      20_000,
      "the bounce to sender@",
    );
    assert.match(bounce.data, /5\.1\.1/);
  });
});
