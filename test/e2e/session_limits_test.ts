/**
 * Session limits: idle and command timeouts, bad commands, line length,
 * the basic verbs, and the greeting delay.
 */

import assert from "node:assert/strict";
import { connect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { cleanup, rawSession, type Server, startServer } from "./harness.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("session limits", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml":
          "smtp:\n  idle_timeout: 1s\n  command_timeout: 2s\n  max_command_length: 1024\n",
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  it("answers RSET, NOOP and QUIT", async () => {
    const s = await rawSession(server);
    assert.match(await s.read(), /^220 /);
    assert.match(await s.send("EHLO client.test"), /^250 /);
    assert.match(await s.send("MAIL FROM:<a@client.test>"), /^250 /);
    assert.match(await s.send("RSET"), /^250 /);
    // After RSET a new transaction may start.
    assert.match(await s.send("MAIL FROM:<b@client.test>"), /^250 /);
    assert.match(await s.send("NOOP"), /^250 /);
    assert.match(await s.send("QUIT"), /^221 /);
    s.close();
  });

  it("closes a silent session after the idle timeout with 421", async () => {
    const s = await rawSession(server);
    assert.match(await s.read(), /^220 /);
    assert.match(await s.read(), /^421 /);
    assert.equal(await s.read(), "(closed)");
  });

  it("closes the session at the hard error limit (20) with 421 4.7.0", async () => {
    const s = await rawSession(server);
    await s.read();
    const answers: string[] = [];
    for (let i = 0; i < 20; i++) answers.push(await s.send(`BOGUS${i}`));
    // Every bad command is answered; the 20th error is followed by the 421.
    assert.ok(answers.every((a) => a.startsWith("500 ")), answers.join("\n"));
    assert.match(await s.read(), /^421 4\.7\.0 .*too many errors/);
    assert.equal(await s.read(), "(closed)");
  });

  it("refuses a command line over the length limit with 500 5.5.2 and reads on", async () => {
    // RFC 5321 sections 4.2.2 and 4.5.3.1.4; before, 421 4.4.2 and the session ended.
    const s = await rawSession(server);
    await s.read();
    await s.send("EHLO client.test");
    assert.equal(
      await s.send(`MAIL FROM:<${"a".repeat(2000)}@client.test>`),
      "500 5.5.2 Error: line too long",
    );
    // A line over the limit in several writes is one refusal, at its end.
    s.socket.write(`NOOP ${"b".repeat(800)}`);
    s.socket.write("c".repeat(800));
    assert.equal(await s.send("d".repeat(10)), "500 5.5.2 Error: line too long");
    assert.match(await s.send("MAIL FROM:<a@client.test>"), /^250 /);
    assert.match(await s.send("QUIT"), /^221 /);
    s.close();
    await server.waitForLog(
      /event=rejected stage=command reason=line_too_long .*reply="500 5\.5\.2 /,
    );
  });
});

describe("command timeout", () => {
  // A long idle timeout: trickling bytes never race it, and only the
  // command timeout (2 s) can end the session.
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "smtp:\n  idle_timeout: 10m\n  command_timeout: 2s\n",
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  it("closes a session whose command never completes, while bytes still trickle in", async () => {
    const s = await rawSession(server);
    try {
      assert.match(await s.read(), /^220 /);
      assert.match(await s.send("EHLO client.test"), /^250 /);
      const reply = s.read();
      let outcome = "";
      void reply.then((line) => outcome = line);
      // A byte every 100 ms until the reply, far more often than the 2 s
      // command timeout: were each byte to restart that timer, no reply
      // would come while they trickle, and the 100 bytes (10 s) would run out.
      const most = 100;
      let sent = 0;
      while (outcome === "" && sent < most) {
        s.socket.write("N");
        sent++;
        await Promise.race([reply, sleep(100)]);
      }
      assert.ok(outcome !== "", `no reply while ${sent} bytes trickled in`);
      assert.match(outcome, /^421 4\.4\.2 .*command timeout/);
    } finally {
      s.close();
    }
  });
});

describe("greeting delay", () => {
  // The greeting comes after 700 ms: a client that waits for it is served.
  let server: Server;
  // The greeting would come after an hour: any command before it is early,
  // however late the test sends it.
  let slow: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "smtp:\n  greeting_delay: 700ms\n",
        "domains/example.test/users": "alice\n",
      },
    });
    slow = await startServer({
      config: {
        "postern.yaml": "smtp:\n  greeting_delay: 1h\n",
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await cleanup(slow);
  });

  it("refuses a client that talks before the greeting", async () => {
    const s = await rawSession(slow);
    s.socket.write("EHLO eager.test\r\n");
    assert.match(await s.read(), /^421 .*talk too soon/);
    s.close();
  });

  it("serves a client that waits for the greeting", async () => {
    const s = await rawSession(server);
    assert.match(await s.read(), /^220 /);
    assert.match(await s.send("EHLO patient.test"), /^250 /);
    assert.match(await s.send("QUIT"), /^221 /);
    s.close();
  });
});

describe("QUIT", () => {
  let server: Server;
  before(async () => {
    server = await startServer({ config: { "domains/example.test/users": "alice\n" } });
  });
  after(async () => {
    await cleanup(server);
  });

  it("closes the connection after QUIT, not waiting for the client to close its side", async () => {
    // Half-open allowed: the client keeps its side open after the server's FIN.
    const socket = connect({ port: server.port, host: server.host, allowHalfOpen: true });
    let text = "";
    socket.on("data", (chunk) => text += chunk.toString("latin1"));
    let outcome: string | undefined;
    socket.on("error", (err: NodeJS.ErrnoException) => outcome ??= err.code ?? err.message);
    socket.on("close", () => outcome ??= "closed without an error");
    const ended = new Promise((resolve) => socket.once("end", resolve));
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write("QUIT\r\n");
    await ended;
    assert.match(text, /^220 [^]*\r\n221 /);
    // A socket the server has closed answers any byte with a reset. One it
    // only half-closed (smtp-server's way) reads and discards them for 5 s (the
    // idle timeout is the default here, 5 min, so the 5 s cap applies): 20
    // tries 100 ms apart end well before that, and the first try after
    // the close (a few ms after the FIN) is reset.
    for (let i = 0; i < 20 && outcome === undefined; i++) {
      socket.write("NOOP\r\n");
      await sleep(100);
    }
    socket.destroy();
    assert.match(String(outcome), /^(ECONNRESET|EPIPE)$/);
  });

  it("answers every command of a group that ends in QUIT before it closes", async () => {
    const socket = connect({ port: server.port, host: server.host });
    let text = "";
    socket.on("data", (chunk) => text += chunk.toString("latin1"));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.on("error", () => {});
    const replied = async (pattern: RegExp) => {
      for (let i = 0; i < 500 && !pattern.test(text); i++) await sleep(10);
    };
    await replied(/^220 /);
    socket.write("EHLO client.test\r\n");
    await replied(/\r\n250 /);
    // RFC 2920 section 3.1: MAIL and RSET may be sent without waiting, and
    // QUIT ends the group; the replies come in order, the 221 last.
    socket.write("MAIL FROM:<a@client.test>\r\nRSET\r\nQUIT\r\n");
    await closed;
    const codes = text.split("\r\n").filter((l) => l !== "").map((l) => l.slice(0, 4))
      .filter((code) => code !== "250-");
    assert.deepEqual(codes, ["220 ", "250 ", "250 ", "250 ", "221 "], text);
  });

  it("answers QUIT inside STARTTLS with a 221 before it closes", async () => {
    const plain = await rawSession(server);
    assert.match(await plain.read(), /^220 /);
    assert.match(await plain.send("EHLO client.test"), /^250 /);
    assert.match(await plain.send("STARTTLS"), /^220 /);
    const secure = tlsConnect({ socket: plain.socket, rejectUnauthorized: false });
    let text = "";
    secure.on("data", (chunk) => text += chunk.toString("latin1"));
    secure.on("error", () => {});
    const closed = new Promise((resolve) => secure.once("close", resolve));
    await new Promise((resolve) => secure.once("secureConnect", resolve));
    secure.write("EHLO client.test\r\nQUIT\r\n");
    await closed;
    assert.match(text, /^250-[^]*\r\n221 [^\r\n]*\r\n$/);
  });
});
