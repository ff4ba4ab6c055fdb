/**
 * Free space at MAIL FROM (issue 14, item 6): with less free space on the
 * spool's file system than the declared SIZE plus `smtp.queue_minfree`,
 * MAIL FROM gets `452 4.3.1 Insufficient system storage` (RFC 1870 section
 * 6.1, as Postfix answers), nothing is spooled, and the refusal is logged.
 * The disk is made "full" for real by asking for more than it has: a
 * reserve larger than any disk, or a declared SIZE over its free space.
 * The spool also lives on a 16 MiB tmpfs the test mounts (it needs root, as
 * here and in CI): a declared SIZE over it gets 452, and a message that
 * fills it during DATA gets 451 4.3.0 with nothing left in the spool.
 * Without mount privileges that test fails and says why.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  rawSession,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";
import { partialSpoolFiles, queuedFiles } from "../support/spool_files.ts";

/** 1 PiB: more than any disk this test runs on. */
const PIB = 1024 ** 5;

async function spoolFiles(server: Server): Promise<string[]> {
  const spool = join(server.dataDir, "spool");
  return [
    ...(await readdir(join(spool, "incoming"))).map((n) => `incoming/${n}`),
    ...(await queuedFiles(server.dataDir)).map((n) => `queue/${n}`),
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

/** Runs a command; resolves with its exit code and error output. */
function command(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stderr });
    });
  });
}

describe("a full disk on a 16 MiB tmpfs", () => {
  let dir: string;
  let mounted = false;
  let refusal = "";
  let server: Server | undefined;

  before(async () => {
    dir = await tempDir("postern-tmpfs-");
    const result = await command("mount", [
      "-t",
      "tmpfs",
      "-o",
      "size=16m,mode=0700",
      "tmpfs",
      dir,
    ]);
    mounted = result.code === 0;
    refusal = result.stderr;
    // Reported by the test below, which fails without the tmpfs.
    if (!mounted) return;
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": "smtp:\n  max_message_size: 64MiB\n  queue_minfree: 1MiB\n",
    });
    server = await startServer({ configDir, dataDir: dir });
  });
  after(async () => {
    if (server) {
      await server.stop();
      await rm(server.configDir, { recursive: true, force: true });
    }
    if (mounted) await command("umount", [dir]);
    await rm(dir, { recursive: true, force: true });
  });

  it("452 4.3.1 for a SIZE over the disk; 451 4.3.0 and nothing kept when DATA fills it; then mail flows", async () => {
    // No fallback: a test that passes without its tmpfs would be a skip in
    // disguise. It needs root (or CAP_SYS_ADMIN), as CI has.
    assert.ok(
      mounted,
      `mount -t tmpfs failed, so the full disk cannot be made (run as root): ${refusal.trim()}`,
    );
    const s = server!;
    const session = await rawSession(s);
    try {
      assert.match(await session.read(), /^220 /);
      assert.match(await session.send("EHLO client.test"), /^250 /);
      assert.equal(
        await session.send(`MAIL FROM:<bob@example.org> SIZE=${20 * 1024 * 1024}`),
        "452 4.3.1 Insufficient system storage",
      );
      // No SIZE: let in, and the disk fills up during DATA.
      assert.match(await session.send("MAIL FROM:<bob@example.org>"), /^250 /);
      assert.match(await session.send("RCPT TO:<alice@localhost>"), /^250 /);
      assert.match(await session.send("DATA"), /^354 /);
      const line = "x".repeat(998) + "\r\n";
      session.socket.write("Subject: too big for the disk\r\n\r\n");
      for (let i = 0; i < 24 * 1024; i++) session.socket.write(line); // 24 MiB
      assert.match(await session.send("."), /^451 4\.3\.0 /);
      // The session goes on, and a message that fits is queued.
      assert.match(await session.send("MAIL FROM:<bob@example.org> SIZE=100"), /^250 /);
      assert.match(await session.send("RCPT TO:<alice@localhost>"), /^250 /);
      assert.match(await session.send("DATA"), /^354 /);
      assert.match(await session.send("Subject: fits\r\n\r\nsmall\r\n."), /^250 2\.0\.0 /);
      await session.send("QUIT");
    } finally {
      session.close();
    }
    await s.waitForLog(/event=rejected stage=mail reason=insufficient_storage /);
    await s.waitForLog(/event=rejected stage=data reason=spool_error /);
    await s.waitForLog(/event=queued /);
    const files = await spoolFiles(s);
    assert.deepEqual(await partialSpoolFiles(s.dataDir), [], files.join(" "));
    assert.ok(files.filter((f) => f.endsWith(".msg")).length <= 1, files.join(" "));
    assert.equal(s.child.exitCode, null);
  });
});
