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
