/**
 * Spare spool files (src/queue/spare_files.ts) as a client meets them: a
 * transaction takes its queue ID, and a file made ahead for it, when its
 * MAIL FROM is accepted; the ID is the one its refusals are logged under
 * and its message is queued as. Transactions that end without a message,
 * however they end, give their files back, so a client cannot make the
 * server hold files by opening transactions, nor make it create and
 * remove a file per MAIL FROM and RSET; a restart after a kill removes
 * unused spares without reporting them as messages.
 */

import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, eventually, queuedId, type Server, startServer, swaks } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";

/** The pool's target (src/queue/spare_files.ts). */
const SPARE_TARGET = 16;

/** Names of the empty files in queue/: spares, ready or held. */
async function spareNames(server: Server): Promise<string[]> {
  const queue = join(server.dataDir, "spool", "queue");
  const names: string[] = [];
  for (const name of await readdir(queue).catch(() => [] as string[])) {
    const size = await stat(join(queue, name)).then((s) => s.size, () => -1);
    if (size === 0) names.push(name);
  }
  return names.sort();
}

async function greeted(server: Server): Promise<LineClient> {
  const client = await LineClient.open(server.host, server.port);
  assert.match((await client.waitFor(/^220 /)) ?? "(no greeting)", /^220 /);
  assert.match(await client.command("EHLO spares.test"), /^250 /);
  return client;
}

describe("spare spool files", () => {
  let server: Server | undefined;
  const config = { "domains/example.test/users": "alice\n" };

  before(async () => {
    server = await startServer({ config });
  });
  after(async () => {
    await cleanup(server);
  });

  it("a transaction's refusals are logged under the queue ID its message is queued as", async () => {
    for (let round = 0; round < 3; round++) {
      const result = await swaks(server!, [
        "--from",
        "sender@client.test",
        "--to",
        `nobody${round}@example.test,alice@example.test`,
        "--body",
        `round ${round}`,
      ]);
      const id = queuedId(result);
      const refusal = await server!.waitForLog(
        new RegExp(`event=rejected stage=rcpt reason=no_such_user .*to=<nobody${round}@`),
      );
      assert.match(refusal, new RegExp(`qid=${id} `), refusal);
    }
  });

  it("transactions that end without a message give their files back, however they end", async () => {
    const s = server!;
    // Many transactions in one session, ended by RSET (some after refused
    // recipients) and by QUIT; and sessions dropped inside one.
    const client = await greeted(s);
    for (let i = 0; i < 40; i++) {
      assert.match(await client.command(`MAIL FROM:<reset${i}@client.test>`), /^250 /);
      assert.match(await client.command("RSET"), /^250 /);
    }
    for (let i = 0; i < 15; i++) {
      assert.match(await client.command(`MAIL FROM:<refused${i}@client.test>`), /^250 /);
      assert.match(await client.command(`RCPT TO:<nobody${i}@example.test>`), /^550 /);
      assert.match(await client.command("RSET"), /^250 /);
    }
    assert.match(await client.command("MAIL FROM:<quit@client.test>"), /^250 /);
    assert.match(await client.command("QUIT"), /^221 /);
    client.close();
    // Twenty sessions hold a transaction each at once, then all drop: the
    // pool refills behind them, and their files must not all come back on
    // top of it.
    const dropped: LineClient[] = [];
    for (let i = 0; i < 20; i++) {
      const session = await greeted(s);
      dropped.push(session);
      assert.match(await session.command(`MAIL FROM:<dropped${i}@client.test>`), /^250 /);
      assert.match(await session.command("RCPT TO:<alice@example.test>"), /^250 /);
    }
    for (const session of dropped) session.close();
    // 76 transactions took a file each; what stays is the ready pool.
    const names = await eventually(
      async () => {
        const spares = await spareNames(s);
        return spares.length <= SPARE_TARGET ? spares : undefined;
      },
      10_000,
      `at most ${SPARE_TARGET} spare files in queue/`,
    ).catch(async (err) => {
      throw new Error(`${err.message}: ${(await spareNames(s)).length} there`);
    });
    assert.ok(names.length > 0, "the server made no spare files");
    // And a message still goes through, into one of them.
    const id = queuedId(
      await swaks(s, ["--from", "sender@client.test", "--to", "alice@example.test"]),
    );
    await s.waitForLog(new RegExp(`qid=${id} event=completed sent=1`), 30_000);
  });

  it("a transaction that ends unlogged gives its file back for the next; one whose ID was logged does not", async () => {
    const s = server!;
    const client = await greeted(s);
    try {
      assert.match(await client.command("MAIL FROM:<first@client.test>"), /^250 /);
      assert.match(await client.command("RSET"), /^250 /);
      const before = await eventually(
        async () => {
          const spares = await spareNames(s);
          return spares.length > 0 ? spares : undefined;
        },
        10_000,
        "spare files in queue/",
      );
      // MAIL FROM and RSET, over and over: the same files go round.
      for (let i = 0; i < 60; i++) {
        assert.match(await client.command(`MAIL FROM:<loop${i}@client.test>`), /^250 /);
        assert.match(await client.command("RSET"), /^250 /);
      }
      const after = await spareNames(s);
      assert.deepEqual(after.filter((name) => !before.includes(name)), [], "files were made");
      // A refused recipient puts the transaction's ID in the log: its file goes.
      assert.match(await client.command("MAIL FROM:<logged@client.test>"), /^250 /);
      assert.match(await client.command("RCPT TO:<nobody-logged@example.test>"), /^550 /);
      const line = await s.waitForLog(/reason=no_such_user .*to=<nobody-logged@/);
      const qid = /qid=(\w+)/.exec(line)?.[1];
      assert.ok(qid && before.includes(`${qid}.msg`), `${line} did not name a spare`);
      // RSET ends it: the file goes with no further command.
      assert.match(await client.command("RSET"), /^250 /);
      await eventually(
        async () => (await spareNames(s)).includes(`${qid}.msg`) ? undefined : true,
        10_000,
        "the logged spare to be removed",
      );
    } finally {
      client.close();
    }
  });

  it("a new EHLO or STARTTLS ends the transaction, and pipelined ones never share an ID", async () => {
    const s = server!;
    /** Opens a transaction on a spare and logs its ID with a refused recipient. */
    const loggedSpare = async (client: LineClient, tag: string): Promise<string> => {
      await eventually(async () => (await spareNames(s)).length > 0 || undefined, 10_000, "spares");
      assert.match(await client.command(`MAIL FROM:<${tag}@client.test>`), /^250 /);
      assert.match(await client.command(`RCPT TO:<nobody-${tag}@example.test>`), /^550 /);
      const line = await s.waitForLog(new RegExp(`reason=no_such_user .*to=<nobody-${tag}@`));
      const qid = /qid=(\w+)/.exec(line)?.[1] ?? "";
      assert.ok((await spareNames(s)).includes(`${qid}.msg`), `${line} did not name a spare`);
      return qid;
    };
    const removed = (qid: string) =>
      eventually(
        async () => (await spareNames(s)).includes(`${qid}.msg`) ? undefined : true,
        10_000,
        `the spare ${qid} to be removed`,
      );
    const client = await greeted(s);
    try {
      // RFC 5321 section 4.1.1.1: EHLO in a transaction clears it.
      const byEhlo = await loggedSpare(client, "ehlo");
      assert.match(await client.command("EHLO again.test"), /^250 /);
      await removed(byEhlo);
      // RFC 3207 section 4.2: what came before the TLS handshake is forgotten.
      const byTls = await loggedSpare(client, "tls");
      assert.match(await client.command("STARTTLS"), /^220 /);
      await client.startTls();
      await removed(byTls);
      assert.match(await client.command("EHLO secure.test"), /^250 /);
      assert.match(await client.command("RCPT TO:<alice@example.test>"), /^503 /);
      // One pipelined group: a refused transaction, RSET, then a message.
      const from = client.lines.length;
      client.write(
        "MAIL FROM:<p1@client.test>\r\nRCPT TO:<nobody-piped@example.test>\r\nRSET\r\n" +
          "MAIL FROM:<p2@client.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
      );
      assert.match((await client.waitFor(/^354 /, from)) ?? "(no 354)", /^354 /);
      assert.deepEqual(
        client.lines.slice(from).map((l) => l.slice(0, 3)),
        ["250", "550", "250", "250", "250", "354"],
      );
      const queued = client.lines.length;
      client.write("Subject: piped\r\n\r\nbody\r\n.\r\n");
      const ok = (await client.waitFor(/^250 .*queued as/, queued)) ?? "(no 250)";
      const qid = /queued as (\w+)/.exec(ok)?.[1];
      const line = await s.waitForLog(/reason=no_such_user .*to=<nobody-piped@/);
      const refusedQid = /qid=(\w+)/.exec(line)?.[1];
      assert.ok(qid && refusedQid, `${ok} / ${line}`);
      assert.notEqual(qid, refusedQid, "one queue ID named two transactions");
      await removed(refusedQid);
    } finally {
      client.close();
    }
  });

  it("after a kill, the next start removes the unused spares and reports none of them", async () => {
    const s = server!;
    await swaks(s, ["--from", "sender@client.test", "--to", "alice@example.test"]);
    const left = await eventually(
      async () => {
        const spares = await spareNames(s);
        return spares.length > 0 ? spares : undefined;
      },
      10_000,
      "spare files in queue/",
    );
    await s.kill();
    server = await startServer({ config, configDir: s.configDir, dataDir: s.dataDir });
    const after = await spareNames(server);
    assert.deepEqual(after.filter((name) => left.includes(name)), [], "a spare survived the start");
    assert.deepEqual(server.mailLog.filter((l) => l.includes("event=unfinished")), []);
    assert.deepEqual(server.mailLog.filter((l) => l.includes("event=quarantined")), []);
  });
});
