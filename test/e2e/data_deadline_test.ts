/**
 * Deadlines around DATA: no deadline answers the client while Postern works
 * on its message (a slow post-data hook), a large message that arrives
 * above `smtp.min_data_rate` is accepted however long it takes, and a
 * trickle below the rate is cut with 421 4.4.2 and nothing queued.
 */

import assert from "node:assert/strict";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, eventually, type Server, startServer, tempDir, writeTree } from "./harness.ts";
import { partialSpoolFiles } from "../support/spool_files.ts";
import { LineClient } from "../support/smtp_lines.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Takes 3.5 s for slow@, longer than the 2 s command timeout. */
const POST_DATA = `#!/bin/sh
cat > /dev/null
case " $RCPT_TO " in
  *" slow@example.test "*) sleep 3.5 ;;
esac
exit 0
`;

describe("DATA deadlines", () => {
  let server: Server;
  before(async () => {
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mx.example.test",
        "smtp:",
        "  command_timeout: 2s",
        "  min_data_rate: 65536",
        "hooks:",
        "  allow_unsandboxed_exec: true",
        "  post_data:",
        "    timeout: 30s",
        "",
      ].join("\n"),
      "domains/example.test/users": "alice\nslow\n",
      "hooks/post-data": POST_DATA,
    });
    await chmod(join(configDir, "hooks", "post-data"), 0o755);
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
  });

  /** A session up to the 354 of DATA for `from` → `to`. */
  async function inData(from: string, to: string): Promise<LineClient> {
    const client = await LineClient.open(server.host, server.port);
    assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
    assert.match(await client.command("EHLO client.test"), /^250 /);
    assert.match(await client.command(`MAIL FROM:<${from}>`), /^250 /);
    assert.match(await client.command(`RCPT TO:<${to}>`), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    return client;
  }

  /** The mail log's queued lines for envelope sender `from`. */
  const queuedFrom = (from: string) =>
    server.mailLog.filter((l) => / event=queued /.test(l) && l.includes(`from=<${from}>`));

  it("answers once, 250, after a post-data hook slower than the command timeout", async () => {
    const client = await inData("slowhook@client.test", "slow@example.test");
    const from = client.lines.length;
    const started = performance.now();
    client.write("Subject: slow hook\r\n\r\nWait for me.\r\n.\r\n");
    const answer = await client.waitFor(/^\d{3} /, from, 30_000);
    const elapsed = performance.now() - started;
    assert.match(answer ?? "(none)", /^250 2\.0\.0 Ok: queued as /);
    // The hook really took longer than the command timeout.
    assert.ok(elapsed >= 3000, `answered after ${Math.round(elapsed)} ms`);
    assert.match(await client.command("QUIT"), /^221 /);
    // One reply only: no 421 before or after it.
    assert.deepEqual(client.lines.slice(from).map((l) => l.slice(0, 3)), ["250", "221"]);
    client.close();
    const line = await server.waitForLog(/event=queued .*from=<slowhook@client\.test>/);
    const qid = / qid=(\S+) /.exec(line)?.[1];
    assert.equal(answer, `250 2.0.0 Ok: queued as ${qid}`);
    assert.equal(queuedFrom("slowhook@client.test").length, 1);
  });

  it("accepts a large message sent above the minimum rate for longer than the command timeout", async () => {
    const client = await inData("large@client.test", "alice@example.test");
    const from = client.lines.length;
    client.write("Subject: large and slow\r\n\r\n");
    const line = "x".repeat(78) + "\r\n";
    const chunk = line.repeat(Math.floor(65536 / line.length));
    // 24 chunks of 64 KiB, one every 150 ms: about 400 KiB/s for 3.6 s,
    // far above 64 KiB/s, and far longer than the 2 s command timeout.
    const started = performance.now();
    for (let i = 0; i < 24 && !client.isClosed; i++) {
      client.write(chunk);
      await sleep(150);
    }
    client.write(".\r\n");
    const answer = await client.waitFor(/^\d{3} /, from, 30_000);
    const elapsed = performance.now() - started;
    assert.match(answer ?? "(none)", /^250 2\.0\.0 Ok: queued as /);
    assert.ok(elapsed >= 2000, `sent in ${Math.round(elapsed)} ms`);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    await server.waitForLog(/event=queued .*from=<large@client\.test>/);
  });

  it("cuts a trickle below the minimum rate with 421 4.4.2 and queues nothing", async () => {
    const client = await inData("trickle@client.test", "alice@example.test");
    const from = client.lines.length;
    client.write("Subject: trickle\r\n\r\n");
    // 50 bytes every 250 ms: 200 bytes/s, far below 64 KiB/s. Bounded: 40
    // rounds (10 s), or until the server answers.
    for (let i = 0; i < 40 && !client.isClosed && client.lines.length === from; i++) {
      client.write("y".repeat(48) + "\r\n");
      await sleep(250);
    }
    const answer = await client.waitFor(/^\d{3} /, from, 10_000);
    assert.match(answer ?? "(none)", /^421 4\.4\.2 .*command timeout/);
    await client.closed;
    // The aborted message leaves nothing in the spool and no queued line.
    await eventually(
      async () => (await partialSpoolFiles(server.dataDir)).length === 0 ? true : undefined,
      10_000,
      "no partial message in the spool",
    );
    assert.deepEqual(queuedFrom("trickle@client.test"), []);
  });
});
