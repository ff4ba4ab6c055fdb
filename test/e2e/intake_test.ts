/**
 * SMTP intake end to end: swaks and nodemailer against the real server.
 */

import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import nodemailer from "nodemailer";
import {
  cleanup,
  eventually,
  maildirMessages,
  rawSession,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

const CONFIG = {
  "postern.yaml":
    "hostname: mx.example.test\nsmtp:\n  max_message_size: 20000\n  max_recipients: 3\n",
  "domains/example.test/users": "alice\nbob\ncarol\ndave\njösé\n",
  "domains/example.test/aliases": "# aliases\n",
};

describe("intake", () => {
  let server: Server;
  before(async () => {
    server = await startServer({ config: CONFIG });
  });
  after(async () => {
    await cleanup(server);
  });

  it("delivers a plain message byte-for-byte into the Maildir", async () => {
    const dir = await tempDir();
    const body = [
      "From: Sender <sender@client.test>",
      "To: alice@example.test",
      "Subject: byte for byte",
      "Message-ID: <plain-1@client.test>",
      "",
      "First line",
      ".leading dot survives dot-stuffing",
      "",
      "tab\there and trailing space ",
    ].join("\r\n");
    await writeFile(join(dir, "msg.eml"), body);
    const result = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      "alice@example.test",
      "--data",
      join(dir, "msg.eml"),
    ]);
    assert.equal(result.code, 0, result.stdout);
    const accepted = replies(result.stdout).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
    assert.ok(accepted, result.stdout);
    const qid = accepted.split(" ").at(-1)!;

    const [stored] = await eventually(async () => {
      const messages = await maildirMessages(server.dataDir, "example.test", "alice");
      return messages.find((m) => m.includes("plain-1@client.test"))
        ? messages.filter((m) => m.includes("plain-1"))
        : undefined;
    });
    const lines = stored!.split("\n");
    assert.equal(lines[0], "Return-Path: <sender@client.test>");
    assert.equal(lines[1], "Delivered-To: alice@example.test");
    assert.equal(lines[2], "Received: from " + lines[2]!.slice(15));
    assert.match(lines[2]!, /^Received: from \S+ \(\[127\.0\.0\.1\]\)$/);
    assert.equal(lines[3], `\tby mx.example.test (Postern) with ESMTP id ${qid}`);
    assert.match(
      lines[4]!,
      /^\tfor <alice@example\.test>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000$/,
    );
    // After the three added headers the message is exactly what was sent
    // (swaks ends the last line), with LF line endings as Maildir expects.
    assert.equal(lines.slice(5).join("\n"), body.replaceAll("\r\n", "\n") + "\n");
    await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
  });

  it("accepts mail over STARTTLS and records ESMTPS", async () => {
    const result = await swaks(server, [
      "--tls",
      "--from",
      "sender@client.test",
      "--to",
      "bob@example.test",
      "--header",
      "Subject: over tls",
    ]);
    assert.equal(result.code, 0, result.stdout);
    assert.match(result.stdout, /TLS started with cipher TLSv1\.[23]/);
    const qid = replies(result.stdout).find((l) => l.includes("queued as"))!.split(" ").at(-1)!;
    const messages = await eventually(async () => {
      const m = await maildirMessages(server.dataDir, "example.test", "bob");
      return m.some((x) => x.includes(qid)) ? m : undefined;
    });
    assert.match(messages.find((m) => m.includes(qid))!, new RegExp(`with ESMTPS id ${qid}`));
    await server.waitForLog(new RegExp(`qid=${qid} event=queued .* tls=true`));
  });

  it("carries 8-bit content and an SMTPUTF8 address through STARTTLS (nodemailer)", async () => {
    const transport = nodemailer.createTransport({
      host: server.host,
      port: server.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
    });
    const raw = "From: sender@client.test\r\nTo: jösé@example.test\r\nSubject: ünïcödé\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
      "Grüße aus Köln — 8 bits ✓\r\n";
    const info = await transport.sendMail({
      envelope: { from: "sender@client.test", to: ["jösé@example.test"] },
      raw,
    });
    transport.close();
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9a-z]{16}$/);
    const qid = info.response.split(" ").at(-1)!;
    const [stored] = await eventually(async () => {
      const m = await maildirMessages(server.dataDir, "example.test", "jösé");
      return m.length > 0 ? m : undefined;
    });
    assert.match(stored!, new RegExp(`with UTF8SMTPS id ${qid}`));
    assert.ok(stored!.endsWith(raw.replaceAll("\r\n", "\n")), stored);
  });

  it("accepts a plain nodemailer submission without TLS", async () => {
    const transport = nodemailer.createTransport({
      host: server.host,
      port: server.port,
      secure: false,
      ignoreTLS: true,
    });
    const info = await transport.sendMail({
      from: "sender@client.test",
      to: "carol@example.test",
      subject: "plain nodemailer",
      text: "hello carol",
    });
    transport.close();
    assert.deepEqual(info.accepted, ["carol@example.test"]);
    const [stored] = await eventually(async () => {
      const m = await maildirMessages(server.dataDir, "example.test", "carol");
      return m.length > 0 ? m : undefined;
    });
    assert.match(stored!, /with ESMTP id /);
    assert.match(stored!, /hello carol/);
  });

  it("refuses an oversized message with 552 5.3.4 after reading it to the end", async () => {
    const session = await rawSession(server);
    assert.match(await session.read(), /^220 /);
    assert.match(await session.send("EHLO client.test"), /^250 /);
    assert.match(await session.send("MAIL FROM:<big@client.test>"), /^250 /);
    assert.match(await session.send("RCPT TO:<dave@example.test>"), /^250 /);
    assert.match(await session.send("DATA"), /^354 /);
    const line = "x".repeat(998) + "\r\n";
    session.socket.write("Subject: big\r\n\r\n" + line.repeat(30));
    assert.match(await session.send("."), /^552 5\.3\.4 /);
    // The session goes on: a small message right after is accepted.
    assert.match(await session.send("MAIL FROM:<small@client.test>"), /^250 /);
    assert.match(await session.send("RCPT TO:<dave@example.test>"), /^250 /);
    assert.match(await session.send("DATA"), /^354 /);
    session.socket.write("Subject: small\r\n\r\nok\r\n");
    assert.match(await session.send("."), /^250 2\.0\.0 Ok: queued as /);
    assert.match(await session.send("QUIT"), /^221 /);
    session.close();
    const messages = await eventually(async () => {
      const m = await maildirMessages(server.dataDir, "example.test", "dave");
      return m.length > 0 ? m : undefined;
    });
    assert.equal(messages.length, 1);
    assert.match(messages[0]!, /Subject: small/);
    const logged = await server.waitForLog(/event=rejected stage=data reason=message_too_big/);
    // The sender in angle brackets, as on every other line.
    assert.match(logged, / from=<big@client\.test> /);
  });

  it("refuses a declared SIZE over the limit at MAIL FROM", async () => {
    const session = await rawSession(server);
    await session.read();
    await session.send("EHLO client.test");
    assert.match(await session.send("MAIL FROM:<big@client.test> SIZE=999999"), /^552 5\.3\.4 /);
    session.close();
  });

  it("refuses unknown local users with 550 5.1.1", async () => {
    const result = await swaks(server, ["--to", "nobody@example.test", "--quit-after", "RCPT"]);
    assert.ok(replies(result.stdout).includes("550 5.1.1 No such user here"), result.stdout);
    await server.waitForLog(/reason=no_such_user .*to=<nobody@example\.test>/);
  });

  it("never relays, whatever the address form", async () => {
    const attempts: Array<[string, RegExp]> = [
      ["someone@elsewhere.test", /^550 5\.7\.1 Relaying denied$/],
      ["alice%elsewhere.test@example.test", /^550 5\.7\.1 /],
      ['"alice@elsewhere.test"@example.test', /^(550 5\.7\.1|501 5\.1\.3) /],
      ["@example.test:alice@elsewhere.test", /^550 5\.7\.1 /],
      ["elsewhere.test!alice@example.test", /^550 5\.7\.1 /],
      ["alice@example.test.elsewhere.test", /^550 5\.7\.1 /],
    ];
    for (const [address, expected] of attempts) {
      const result = await swaks(server, ["--to", address, "--quit-after", "RCPT"]);
      const rcptReply = replies(result.stdout).at(-2) ?? "";
      assert.match(rcptReply, expected, `${address}: ${result.stdout}`);
    }
    assert.ok(!server.mailLog.some((l) => /event=queued .*elsewhere/.test(l)));
  });

  it("limits recipients per message with 452 4.5.3", async () => {
    const session = await rawSession(server);
    await session.read();
    await session.send("EHLO client.test");
    await session.send("MAIL FROM:<many@client.test>");
    for (const user of ["alice", "bob", "carol"]) {
      assert.match(await session.send(`RCPT TO:<${user}@example.test>`), /^250 /);
    }
    assert.equal(
      await session.send("RCPT TO:<dave@example.test>"),
      "452 4.5.3 Too many recipients",
    );
    session.close();
  });

  it("advertises the ESMTP extensions and keeps VRFY disabled", async () => {
    const session = await rawSession(server);
    assert.match(await session.read(), /^220 mx\.example\.test ESMTP/);
    session.socket.write("EHLO client.test\r\n");
    const lines: string[] = [];
    const collect = new Promise<void>((resolve) => {
      session.socket.on("data", (chunk) => {
        lines.push(...chunk.toString().split("\r\n").filter(Boolean));
        if (lines.some((l) => /^250 /.test(l))) resolve();
      });
    });
    await collect;
    const text = lines.join("\n");
    for (
      const ext of [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "SIZE 20000",
      ]
    ) {
      assert.match(text, new RegExp(`^250[- ]${ext}$`, "m"));
    }
    assert.doesNotMatch(text, /AUTH/);
    session.close();
    const vrfy = await swaks(server, ["--quit-after", "EHLO", "--to", "alice@example.test"]);
    assert.equal(vrfy.code, 0);
    const probe = await rawSession(server);
    await probe.read();
    await probe.send("EHLO client.test");
    assert.equal(await probe.send("VRFY alice"), "502 5.5.1 VRFY command is disabled");
    probe.close();
  });
});

describe("intake in an any_user domain", () => {
  let server: Server;
  before(async () => {
    // The embedded default: any user at localhost.
    server = await startServer({ noConfig: true });
  });
  after(async () => {
    await cleanup(server);
  });

  it("refuses a name its mailbox could not have with 501 5.1.3, and delivers one of 64 octets", async () => {
    const longest = "x".repeat(64);
    const session = await rawSession(server);
    await session.read();
    await session.send("EHLO client.test");
    assert.match(await session.send("MAIL FROM:<far@client.test>"), /^250 /);
    // The audit's case: taken, then ENAMETOOLONG at every delivery for 5 days.
    assert.equal(
      await session.send(`RCPT TO:<${"=".repeat(90)}@localhost>`),
      "501 5.1.3 Bad recipient address: local part too long",
    );
    assert.equal(
      await session.send(`RCPT TO:<${"x".repeat(65)}@localhost>`),
      "501 5.1.3 Bad recipient address: local part too long",
    );
    assert.match(await session.send(`RCPT TO:<${longest}@localhost>`), /^250 /);
    assert.match(await session.send("DATA"), /^354 /);
    assert.match(await session.send("Subject: long name\r\n\r\nhi\r\n."), /^250 /);
    session.close();
    await server.waitForLog(/reason=local_part_too_long .*to="<={90}@localhost>"/);
    const [stored] = await eventually(async () => {
      const m = await maildirMessages(server.dataDir, "localhost", longest);
      return m.length > 0 ? m : undefined;
    });
    assert.match(stored!, /Subject: long name/);
  });
});

describe("connection limits", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "smtp:\n  max_connections_per_ip: 2\n  max_connections: 10\n",
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  it("refuses connections over the per-IP limit with 421 4.7.0", async () => {
    const first = await rawSession(server);
    const second = await rawSession(server);
    assert.match(await first.read(), /^220 /);
    assert.match(await second.read(), /^220 /);
    const third = await rawSession(server);
    assert.equal(
      await third.read(),
      "421 4.7.0 Too many connections from your address, try again later",
    );
    first.close();
    second.close();
    third.close();
    await server.waitForLog(/event=rejected stage=connect reason=too_many_connections/);
    // Closed connections are released: a new one is welcome again.
    const again = await eventually(async () => {
      const s = await rawSession(server);
      const greeting = await s.read();
      s.close();
      return greeting.startsWith("220 ") ? greeting : undefined;
    });
    assert.match(again, /^220 /);
  });

  it("enforces a new max_connections_per_ip from a live reload, raised and lowered", async () => {
    const yaml = join(server.configDir, "postern.yaml");
    const reloadTo = async (perIp: number) => {
      const from = server.stderr().split("\n").length - 1;
      await writeFile(yaml, `smtp:\n  max_connections_per_ip: ${perIp}\n  max_connections: 10\n`);
      await eventually(
        () =>
          Promise.resolve(
            server.stderr().split("\n").slice(from).find((l) => /policy reloaded/.test(l)),
          ),
        10_000,
        `the reload to max_connections_per_ip ${perIp}`,
      );
    };
    // Opens `count` sessions one after the other; their greetings, once the
    // first `count - 1` are welcome (sessions of the test before may take a
    // moment to be released).
    const greetings = (count: number) =>
      eventually(
        async () => {
          const sessions = [];
          const lines: string[] = [];
          for (let i = 0; i < count; i++) {
            const session = await rawSession(server);
            sessions.push(session);
            lines.push(await session.read());
          }
          for (const session of sessions) session.close();
          return lines.slice(0, -1).every((l) => l.startsWith("220 ")) ? lines : undefined;
        },
        10_000,
        `${count - 1} welcome sessions`,
      );
    const refused = "421 4.7.0 Too many connections from your address, try again later";

    await reloadTo(3);
    assert.equal((await greetings(4))[3], refused);
    await reloadTo(1);
    assert.equal((await greetings(2))[1], refused);
  });
});
