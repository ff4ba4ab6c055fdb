/**
 * Hostile pipelining: one client flooding pipelined commands must not stall
 * the others; a session of refused commands ends at the hard error limit
 * with one summary line in the mail log; a message pipelined behind a
 * refused DATA never runs as commands.
 */

import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { cleanup, type Server, startServer } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";
import { queuedFiles } from "../support/spool_files.ts";

/** Commands in the flood, as in the report of issue 14. */
const FLOOD = 50_000;

/**
 * A bystander's whole session while floods run: greeting, EHLO, then MAIL,
 * RCPT and QUIT pipelined in one group (RFC 2920), so that the test's own
 * pace adds no round trips in which a flood could finish. Served fairly,
 * it ends while the floods are still being answered; served after them,
 * as before the fix, it ends only once they are done. Returns its replies.
 */
async function bystanderSession(server: Server): Promise<string[]> {
  const bystander = await LineClient.open(server.host, server.port);
  try {
    assert.match((await bystander.waitFor(/^220 /)) ?? "(no greeting)", /^220 /);
    assert.match(await bystander.command("EHLO bystander.test"), /^250 /);
    const from = bystander.lines.length;
    bystander.write(
      "MAIL FROM:<bystander@client.test>\r\nRCPT TO:<alice@example.test>\r\nQUIT\r\n",
    );
    await bystander.waitForLines(from + 3);
    return bystander.lines.slice(from);
  } finally {
    bystander.close();
  }
}

describe("pipelining", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "hostname: mx.example.test\n",
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  async function greeted(): Promise<LineClient> {
    const client = await LineClient.open(server.host, server.port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("EHLO flood.test"), /^250 /);
    return client;
  }

  it("serves a bystander's whole session while a client pipelines 50,000 RCPT TO", async () => {
    const flooder = await greeted();
    assert.match(await flooder.command("MAIL FROM:<flood@flood.test>"), /^250 /);
    // Every RCPT is accepted (the same address again), so no error limit
    // cuts the flood short: only fair scheduling can serve the bystander.
    const start = flooder.lines.length;
    flooder.write("RCPT TO:<alice@example.test>\r\n".repeat(FLOOD));
    // The flood is under way once the first thousand replies are back.
    await flooder.waitForLines(start + 1000, 60_000);
    const served = await bystanderSession(server);
    const floodDone = flooder.lines.length - start;
    assert.deepEqual(served.map((l) => l.slice(0, 4)), ["250 ", "250 ", "221 "], served.join("\n"));
    // Served during the flood, not after it.
    assert.ok(floodDone < FLOOD, `the flood was over (${floodDone} replies)`);
    // The flood is served too, all of it, and the session is still good.
    await flooder.waitForLines(start + FLOOD, 120_000);
    const floodReplies = flooder.lines.slice(start);
    assert.equal(floodReplies.length, FLOOD);
    assert.ok(
      floodReplies.every((l) => l.startsWith("250 ")),
      floodReplies.find((l) => !l.startsWith("250 ")),
    );
    assert.match(await flooder.command("RSET"), /^250 /);
    flooder.close();
  });

  it("serves a bystander while six clients pipeline 50,000 NOOP each", async () => {
    // smtp-server answers NOOP (and RSET, EHLO, VRFY) within the call, and
    // then yields to the event loop only every 100 commands; on Deno that
    // kept a bystander waiting for most of the floods (1 s from connect to
    // its EHLO reply with four flooders, 1.8 s with three on a busier
    // machine), while the RCPT flood above, answered from a promise,
    // was served fairly.
    const flooders = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(() => rawFlooder(server.port, "NOOP\r\n")),
    );
    // The floods are under way once each has a thousand replies back.
    await Promise.all(flooders.map((f) => f.untilLines(1000)));
    const served = await bystanderSession(server);
    const progress = flooders.map((f) => f.lines());
    assert.deepEqual(served.map((l) => l.slice(0, 4)), ["250 ", "250 ", "221 "], served.join("\n"));
    // Served during the floods, not after them: none of them was over.
    assert.ok(progress.every((n) => n < FLOOD), `the floods had ${progress.join(", ")} replies`);
    // Every flood is answered in full, and each session is still good.
    for (const f of flooders) {
      assert.equal(await f.untilLines(FLOOD), FLOOD);
      f.socket.end("QUIT\r\n");
    }
  });

  it("ends a flood of refused RCPTs at 20 errors with 421 4.7.0, logged once with a count", async () => {
    const flooder = await greeted();
    assert.match(await flooder.command("MAIL FROM:<refused@flood.test>"), /^250 /);
    const start = flooder.lines.length;
    let flood = "";
    for (let i = 0; i < FLOOD; i++) flood += `RCPT TO:<nobody-${i}@example.test>\r\n`;
    flooder.write(flood);
    await flooder.closed;
    const replies = flooder.lines.slice(start);
    assert.equal(replies.length, 21, replies.join("\n"));
    assert.ok(replies.slice(0, 20).every((l) => l.startsWith("550 5.1.1 ")), replies.join("\n"));
    assert.match(replies[20]!, /^421 4\.7\.0 mx\.example\.test Error: too many errors/);
    const summary = await server.waitForLog(/event=session_refusals .*reason=too_many_errors/);
    const session = / session=(\S+) /.exec(summary)?.[1];
    assert.ok(session, summary);
    assert.match(summary, / rejected=20 unlogged=15 reason=too_many_errors errors=20 /);
    assert.match(summary, /reply="421 4\.7\.0 /);
    const lines = server.mailLog.filter((l) => l.includes(`session=${session} `));
    // The connect line, five refusals in full, and the summary.
    assert.equal(lines.filter((l) => / event=rejected /.test(l)).length, 5, lines.join("\n"));
    assert.equal(lines.length, 7, lines.join("\n"));
  });

  it("logs an ordinary session's few refusals one line each, with no summary", async () => {
    const client = await greeted();
    assert.match(await client.command("MAIL FROM:<few@flood.test>"), /^250 /);
    assert.match(await client.command("RCPT TO:<ghost-one@example.test>"), /^550 5\.1\.1 /);
    assert.match(await client.command("RCPT TO:<ghost-two@example.test>"), /^550 5\.1\.1 /);
    assert.match(await client.command("QUIT"), /^221 /);
    await client.closed;
    const line = await server.waitForLog(/event=rejected .*to=<ghost-two@example\.test>/);
    const session = / session=(\S+) /.exec(line)?.[1];
    // A summary would be written as the server sees the close, before it
    // accepts the next connection: a refusal in a later session is logged
    // after it.
    const later = await greeted();
    assert.match(await later.command("MAIL FROM:<later@flood.test>"), /^250 /);
    assert.match(await later.command("RCPT TO:<ghost-three@example.test>"), /^550 5\.1\.1 /);
    later.close();
    await server.waitForLog(/event=rejected .*to=<ghost-three@example\.test>/);
    const lines = server.mailLog.filter((l) => l.includes(`session=${session} `));
    assert.equal(lines.filter((l) => / event=rejected /.test(l)).length, 2);
    assert.equal(lines.filter((l) => / event=session_refusals /.test(l)).length, 0);
  });

  it("never runs a message pipelined behind a refused DATA as commands", async () => {
    const client = await greeted();
    const start = client.lines.length;
    // No valid recipient, so DATA is refused, and the "message" carries a
    // transaction of its own that must not be run.
    client.write(
      [
        "MAIL FROM:<smuggler@flood.test>",
        "RCPT TO:<ghost@example.test>",
        "DATA",
        "MAIL FROM:<smuggled@flood.test>",
        "RCPT TO:<alice@example.test>",
        "DATA",
        "Subject: smuggled",
        "",
        "This must never be queued.",
        ".",
        "QUIT",
        "",
      ].join("\r\n"),
    );
    await client.closed;
    const replies = client.lines.slice(start);
    assert.equal(replies.length, 3, replies.join("\n"));
    assert.match(replies[0]!, /^250 /);
    assert.match(replies[1]!, /^550 5\.1\.1 /);
    assert.equal(replies[2], "554 5.5.0 Error: SMTP protocol synchronization");
    await server.waitForLog(/event=rejected stage=data reason=pipelined_message /);
    assert.ok(!server.mailLog.some((l) => l.includes("smuggled@flood.test")));
    const queued = await queuedFiles(server.dataDir);
    assert.deepEqual(queued, []);
  });

  it("never runs the chunk of a refused BDAT as commands (CHUNKING is not offered)", async () => {
    const client = await greeted();
    assert.match(await client.command("MAIL FROM:<chunker@flood.test>"), /^250 /);
    assert.match(await client.command("RCPT TO:<alice@example.test>"), /^250 /);
    const start = client.lines.length;
    // RFC 3030 section 2: the bytes after a BDAT line are its chunk, not
    // commands. Before, the BDAT got 500, the chunk's lines ran as commands
    // and the smuggled DATA got 354.
    const smuggled = [
      "RSET",
      "MAIL FROM:<smuggled@flood.test>",
      "RCPT TO:<alice@example.test>",
      "DATA",
      "Subject: smuggled",
      "",
      "This must never be queued.",
      ".",
      "",
    ].join("\r\n");
    client.write(`BDAT ${smuggled.length} LAST\r\n${smuggled}`);
    // Bounded: before the fix the session stayed open in the smuggled DATA.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      client.closed.then(() => "closed"),
      new Promise((res) => timer = setTimeout(() => res("open"), 15_000)),
    ]);
    clearTimeout(timer);
    client.close();
    const replies = client.lines.slice(start);
    assert.equal(ended, "closed", replies.join("\n"));
    assert.deepEqual(replies, ["554 5.5.0 Error: SMTP protocol synchronization"]);
    assert.ok(!server.mailLog.some((l) => l.includes("smuggled@flood.test")));
    const queued = await queuedFiles(server.dataDir);
    assert.deepEqual(queued, []);
  });
});

/**
 * A client that sends `line` FLOOD times in one write after its greeting
 * and only counts the reply lines (a LineClient would keep 50,000 lines
 * and slow the test process, not the server).
 */
async function rawFlooder(port: number, line: string): Promise<{
  socket: Socket;
  lines: () => number;
  untilLines: (count: number, timeoutMs?: number) => Promise<number>;
}> {
  const socket = connect(port, "127.0.0.1");
  let count = 0;
  let greeted = false;
  let closed = false;
  socket.on("error", () => {});
  socket.on("close", () => closed = true);
  await new Promise<void>((res, rej) => {
    socket.once("error", rej);
    socket.on("data", (chunk: Uint8Array) => {
      for (const b of chunk) if (b === 0x0a) count++;
      if (!greeted && count > 0) {
        greeted = true;
        count = 0;
        socket.write(line.repeat(FLOOD));
        res();
      }
    });
  });
  const untilLines = async (want: number, timeoutMs = 120_000) => {
    const deadline = performance.now() + timeoutMs;
    while (count < want && !closed && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return count;
  };
  return { socket, lines: () => count, untilLines };
}
