/**
 * Forged Authentication-Results (issue 14, item 3; RFC 8601 section 5):
 * fields from outside that claim our authserv-id are removed, however they
 * are spelled, before our own is added. The two reported spellings (after
 * a header field over 64 KiB; with nested comments before the id) and a
 * claim behind a comment too long to judge in memory, sent with swaks and
 * over a raw socket; the delivered message is checked. Submitted mail
 * (a logged-in user is no trusted MTA either) loses such claims too.
 */

import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { hashPassword } from "../../src/users/mod.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  rawSession,
  run,
  type Server,
  startServer,
  submitMail,
  tempDir,
} from "./harness.ts";

const HOSTNAME = "mx.postern.test";

/** A folded field of about `bytes` bytes, lines of 900. */
function hugeField(name: string, bytes: number): string {
  const lines = Array.from({ length: Math.ceil(bytes / 900) }, (_, i) => `${i} ${"y".repeat(890)}`);
  return `${name}: ${lines.join("\r\n ")}`;
}

/** The header fields of a delivered message (LF line ends), unfolded. */
function fields(message: string): string[] {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.replace(/\n(?=[ \t])/g, "").split("\n");
}

/** The Authentication-Results fields that claim our id, in a delivered message. */
function claims(message: string): string[] {
  return fields(message).filter((f) =>
    f.toLowerCase().startsWith("authentication-results:") && f.includes(HOSTNAME)
  );
}

describe("forged Authentication-Results end to end", () => {
  let dns: TestDnsServer;
  let server: Server;
  let dir: string;
  let submission: number;

  before(async () => {
    dir = await tempDir("postern-authres-");
    dns = await startDnsServer({ "pass.test": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] } });
    submission = await freePort();
    server = await startServer({
      config: {
        "postern.yaml": [
          `hostname: ${HOSTNAME}`,
          "dns:",
          `  servers: ["${dns.address}"]`,
          "  timeout: 2s",
          "auth:",
          "  trusted_networks: []",
          "submission:",
          `  listen: ["127.0.0.1:${submission}"]`,
          "",
        ].join("\n"),
        "domains/example.test/users": `alice\nbob ${await hashPassword("pw-bob-1")}\n`,
      },
    });
  });
  after(async () => {
    await cleanup(server);
    if (dns) await dns.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The delivered message with queue ID `qid`. */
  async function delivered(qid: string): Promise<string> {
    return await eventually(
      async () => {
        const all = await maildirMessages(server.dataDir, "example.test", "alice");
        return all.find((m) => m.includes(` id ${qid}`) || m.includes(qid));
      },
      15_000,
      `delivery of ${qid}`,
    );
  }

  it("removes our authserv-id after a header field over 64 KiB (swaks)", async () => {
    const filler = hugeField("X-Filler", 100_000);
    const data = [
      "From: Bob <bob@pass.test>",
      "To: alice@example.test",
      filler,
      `Authentication-Results: ${HOSTNAME}; spf=pass smtp.mailfrom=forged@bank.test`,
      "Authentication-Results: elsewhere.test; spf=fail",
      "Subject: after a long field",
      "",
      "body",
      "",
    ].join("\r\n");
    const path = join(dir, "long.eml");
    await writeFile(path, data);
    const result = await run("swaks", [
      "--server",
      `${server.host}:${server.port}`,
      "--timeout",
      "30",
      "--from",
      "bob@pass.test",
      "--to",
      "alice@example.test",
      "--data",
      path,
    ]);
    const qid = /250 2\.0\.0 Ok: queued as (\w+)/.exec(result.stdout)?.[1];
    assert.ok(qid, result.stdout.slice(-2000));
    const text = await delivered(qid);
    assert.ok(!text.includes("forged@bank.test"), "the forged field was delivered");
    assert.equal(claims(text).length, 1, claims(text).join("\n"));
    assert.match(claims(text)[0]!, /^Authentication-Results: mx\.postern\.test; .*spf=pass/);
    assert.ok(text.includes("Authentication-Results: elsewhere.test; spf=fail"));
    // The long field arrives whole (LF line ends in the Maildir).
    assert.ok(text.includes(filler.replaceAll("\r\n", "\n")), "the long field was changed");
  });

  it("removes our authserv-id behind nested comments, and behind a comment over 64 KiB (raw socket)", async () => {
    const longComment = "(" + Array.from({ length: 100 }, () => "c".repeat(900)).join("\r\n ") +
      ")";
    const head = [
      "From: Bob <bob@pass.test>",
      "To: alice@example.test",
      `Authentication-Results: (a (nested (deeper) \\) comment) here)\r\n\t${HOSTNAME}; dkim=pass header.d=bank.test`,
      `authentication-results :(x)"${HOSTNAME.toUpperCase()}" 1;\r\n spf=pass smtp.mailfrom=other@bank.test`,
      `Authentication-Results: ${longComment} ${HOSTNAME}; dmarc=pass header.from=bank.test`,
      `Authentication-Results: (${HOSTNAME}) elsewhere.test; dkim=fail`,
      "Subject: nested",
    ];
    const session = await rawSession(server);
    try {
      assert.match(await session.read(), /^220 /);
      assert.match(await session.send("EHLO client.test"), /^250 /);
      assert.match(await session.send("MAIL FROM:<bob@pass.test>"), /^250 /);
      assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
      assert.match(await session.send("DATA"), /^354 /);
      // In pieces, as a client writes a long message.
      const message = head.join("\r\n") + "\r\n\r\nbody\r\n.";
      for (let i = 0; i < message.length; i += 10_000) {
        session.socket.write(message.slice(i, i + 10_000));
      }
      const reply = await session.send("");
      const qid = /^250 2\.0\.0 Ok: queued as (\w+)$/.exec(reply)?.[1];
      assert.ok(qid, reply);
      await session.send("QUIT");
      const text = await delivered(qid);
      assert.ok(!text.includes("bank.test"), "a forged field was delivered");
      assert.equal(claims(text).length, 2, claims(text).join("\n")); // ours, and the comment one
      assert.match(claims(text)[0]!, /^Authentication-Results: mx\.postern\.test; /);
      assert.ok(text.includes(`Authentication-Results: (${HOSTNAME}) elsewhere.test; dkim=fail`));
      await eventually(
        () =>
          Promise.resolve(
            new RegExp(`removed Authentication-Results .*qid=${qid}.* fields=3`).test(
                server.stderr(),
              )
              ? true
              : undefined,
          ),
        5_000,
        "the log line",
      );
    } finally {
      session.close();
    }
  });

  it("removes claims of our authserv-id from submitted mail too, keeping other fields", async () => {
    const result = await submitMail(
      submission,
      { user: "bob@example.test", password: "pw-bob-1" },
      "bob@example.test",
      ["alice@example.test"],
      [
        "--add-header",
        `Authentication-Results: (user (forged)) ${HOSTNAME}; dmarc=pass header.from=bank.test`,
        "--add-header",
        "Authentication-Results: elsewhere.test; dkim=fail",
        "--add-header",
        "X-Kept: yes",
      ],
    );
    const qid = /250 2\.0\.0 Ok: queued as (\w+)/.exec(result.stdout)?.[1];
    assert.ok(qid, result.stdout.slice(-2000));
    const text = await delivered(qid);
    assert.ok(!text.includes("bank.test"), "the forged field was delivered");
    assert.deepEqual(claims(text), []); // submitted mail is not checked: no field of ours
    assert.ok(text.includes("Authentication-Results: elsewhere.test; dkim=fail"));
    assert.ok(text.includes("X-Kept: yes"));
  });
});
