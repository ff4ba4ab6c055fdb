/**
 * Free space at MAIL FROM (issue 14, item 6): with less free space on the
 * spool's file system than the declared SIZE plus `smtp.queue_minfree`,
 * MAIL FROM gets `452 4.3.1 Insufficient system storage` (RFC 1870 section
 * 6.1, as Postfix answers), nothing is spooled, and the refusal is logged.
 * The disk is made "full" for real by asking for more than it has: a
 * reserve larger than any disk, or a declared SIZE over its free space.
 */

import assert from "node:assert/strict";
import { readdir, statfs } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, rawSession, type Server, startServer, swaks } from "./harness.ts";

/** 1 PiB: more than any disk this test runs on. */
const PIB = 1024 ** 5;

async function spoolFiles(server: Server): Promise<string[]> {
  const spool = join(server.dataDir, "spool");
  return [
    ...(await readdir(join(spool, "incoming"))).map((n) => `incoming/${n}`),
    ...(await readdir(join(spool, "queue"))).map((n) => `queue/${n}`),
  ];
}

describe("free space at MAIL FROM", () => {
  let reserveTooBig: Server;
  let sizeChecked: Server;

  before(async () => {
    reserveTooBig = await startServer({
      config: { "postern.yaml": "smtp:\n  queue_minfree: 1048576GiB\n" },
    });
    sizeChecked = await startServer({
      config: { "postern.yaml": `smtp:\n  max_message_size: ${PIB}\n  queue_minfree: 1MiB\n` },
    });
  });
  after(async () => {
    await cleanup(reserveTooBig);
    await cleanup(sizeChecked);
  });

  it("452 4.3.1 when the reserve is more than the disk has free; nothing spooled; logged", async () => {
    const result = await swaks(reserveTooBig, [
      "--from",
      "bob@example.org",
      "--to",
      "alice@localhost",
    ]);
    assert.match(result.stdout, /<\*\* +452 4\.3\.1 Insufficient system storage/, result.stdout);
    assert.doesNotMatch(result.stdout, /queued as/);
    const line = await reserveTooBig.waitForLog(/event=rejected stage=mail /);
    assert.match(line, /reason=insufficient_storage /);
    assert.match(line, /from=<bob@example\.org>/);
    assert.match(line, /reply="452 4\.3\.1 Insufficient system storage"/);
    assert.deepEqual(await spoolFiles(reserveTooBig), []);
  });

  it("counts the declared SIZE: over the free space gets 452, a small one is accepted and queued", async () => {
    const stats = await statfs(sizeChecked.dataDir);
    const free = Number(stats.bavail) * Number(stats.bsize);
    const session = await rawSession(sizeChecked);
    try {
      assert.match(await session.read(), /^220 /);
      assert.match(await session.send("EHLO client.test"), /^250 /);
      // Twice what is free now: no plausible change of the disk makes it fit.
      const tooBig = Math.min(2 * free, PIB);
      assert.equal(
        await session.send(`MAIL FROM:<bob@example.org> SIZE=${tooBig}`),
        "452 4.3.1 Insufficient system storage",
      );
      // The transaction never started: RCPT needs a MAIL first.
      assert.match(await session.send("RCPT TO:<alice@localhost>"), /^503 /);
      assert.match(await session.send("MAIL FROM:<bob@example.org> SIZE=1000"), /^250 /);
      assert.match(await session.send("RCPT TO:<alice@localhost>"), /^250 /);
      assert.match(await session.send("DATA"), /^354 /);
      assert.match(
        await session.send("Subject: fits\r\n\r\nsmall\r\n."),
        /^250 2\.0\.0 Ok: queued as \w+$/,
      );
      await session.send("QUIT");
    } finally {
      session.close();
    }
    const line = await sizeChecked.waitForLog(/event=rejected stage=mail /);
    assert.match(line, /reason=insufficient_storage .*reply="452 4\.3\.1 /);
    await sizeChecked.waitForLog(/event=queued /);
  });
});
