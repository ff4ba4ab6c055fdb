/**
 * Start-up: the embedded default configuration, configuration errors, the
 * `check` command, and recovery of the spool left by an earlier run.
 */

import assert from "node:assert/strict";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  posternCommand,
  replies,
  run,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";
import { OPEN_SEAL } from "../../src/queue/seal.ts";

async function postern(args: string[]) {
  const [cmd, ...rest] = posternCommand(args);
  return await run(cmd!, rest);
}

describe("start-up", () => {
  it("serves the embedded default: any user at localhost, with STARTTLS", async () => {
    const server = await startServer({ noConfig: true });
    try {
      const result = await swaks(server, ["--tls", "--to", "newcomer@localhost"]);
      assert.ok(
        replies(result.stdout).some((l) => l.startsWith("250 2.0.0 Ok: queued as")),
        result.stdout,
      );
      const [stored] = await eventually(async () => {
        const m = await maildirMessages(server.dataDir, "localhost", "newcomer");
        return m.length > 0 ? m : undefined;
      });
      assert.match(stored!, /with ESMTPS id /);
      // The self-signed certificate is kept for the next start.
      assert.deepEqual((await readdir(join(server.dataDir, "tls"))).sort(), [
        "selfsigned.crt",
        "selfsigned.key",
      ]);
      const relay = await swaks(server, ["--to", "someone@example.com", "--quit-after", "RCPT"]);
      assert.ok(replies(relay.stdout).includes("550 5.7.1 Relaying denied"), relay.stdout);
    } finally {
      await cleanup(server);
    }
  });

  it("refuses to start on a misspelt setting, naming file, line and field", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      "postern.yaml": "hostname: mx.example.test\nsmtp:\n  max_recipints: 5\n",
    });
    const result = await postern(["serve", "--config", dir, "--listen", "127.0.0.1:0"]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      new RegExp(`${join(dir, "postern.yaml")}:3: smtp\\.max_recipints is not a known setting`),
    );
    await rm(dir, { recursive: true });
  });

  it("names the field and the problem for a value of the wrong type", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      "postern.yaml": 'smtp:\n  max_message_size: lots\n  listen: ["nowhere"]\n',
    });
    const result = await postern(["check", "--config", dir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /postern\.yaml:2: smtp\.max_message_size "lots" is not a size/);
    assert.match(result.stderr, /postern\.yaml:3: smtp\.listen\.0 must be an address/);
    await rm(dir, { recursive: true });
  });

  it("reports a bad aliases line with its file and line number", async () => {
    const dir = await tempDir();
    await writeTree(dir, { "domains/example.test/aliases": "ok: fine\nbroken line\n" });
    const result = await postern(["check", "--config", dir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`${join(dir, "domains/example.test/aliases")}:2: `));
    await rm(dir, { recursive: true });
  });

  it("check accepts a valid configuration", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      "postern.yaml": "smtp:\n  max_message_size: 10MiB\n  idle_timeout: 2m\n",
      "domains/example.test/users": "alice\n",
    });
    const result = await postern(["check", "--config", dir]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /configuration OK: 1 domain/);
    await rm(dir, { recursive: true });
  });

  it("check type-checks TypeScript hooks against the SDK, naming the file and line", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      // As the README shows: the SDK's types imported from ./mod.ts.
      "hooks/post-data.ts": [
        'import type { PostDataCall, PostDataResult } from "./mod.ts";',
        "export default function (input: PostDataCall): PostDataResult {",
        '  return { action: "accept", headers: [`X-From: ${input.mailFrom}`] };',
        "}",
        "",
      ].join("\n"),
      // As the examples do, from one folder up.
      "hooks/alias-exists.ts": [
        'import type { AliasExistsResult, AliasInput } from "../mod.ts";',
        "export default (input: AliasInput): AliasExistsResult => input.address.startsWith('a');",
        "",
      ].join("\n"),
    });
    const good = await postern(["check", "--config", dir]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /hooks type-check: .*post-data\.ts, .*alias-exists\.ts/);

    await writeTree(dir, {
      "hooks/alias-exists.ts": [
        'import type { AliasExistsResult, AliasInput } from "../mod.ts";',
        "export default (input: AliasInput): AliasExistsResult => input.adress.length > 0;",
        "",
      ].join("\n"),
    });
    const bad = await postern(["check", "--config", dir]);
    assert.equal(bad.code, 1, bad.stdout);
    assert.match(bad.stderr, /hooks do not type-check/);
    assert.match(bad.stderr, new RegExp(`${join(dir, "hooks", "alias-exists.ts")}:2:`));
    assert.match(bad.stderr, /adress/);
    await rm(dir, { recursive: true });
  });

  it("check validates rate limits", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      "postern.yaml": "rate_limits:\n  connections_per_ip_per_minute: -1\n",
    });
    const result = await postern(["check", "--config", dir]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /postern\.yaml:2: rate_limits\.connections_per_ip_per_minute must be at least 0/,
    );
    await rm(dir, { recursive: true });
  });

  it("resumes the spool at start-up, moves corrupt items aside and removes unfinished ones", async () => {
    const dataDir = await tempDir("postern-data-");
    const queue = join(dataDir, "spool", "queue");
    await mkdir(queue, { recursive: true });
    await mkdir(join(dataDir, "spool", "incoming"), { recursive: true });
    const id = "01m80000000000aa";
    const envelope = {
      v: 1,
      id,
      from: "old@client.test",
      to: ["alice@example.test"],
      received_at: new Date().toISOString(),
      client: { ip: "127.0.0.1", helo: "client.test", tls: false },
      smtputf8: false,
    };
    await writeFile(
      join(queue, `${id}.msg`),
      JSON.stringify(envelope) + "\nSubject: left over\r\n\r\nstill here\r\n",
    );
    await writeFile(join(queue, "01m80000000000bb.msg"), "{not json\nSubject: broken\r\n\r\n");
    await writeFile(join(dataDir, "spool", "incoming", "01m80000000000cc"), "half a mess");
    // A message still arriving when the server stopped: its seal is open.
    const half = { ...envelope, id: "01m80000000000dd" };
    await writeFile(
      join(queue, `${half.id}.msg`),
      new TextDecoder().decode(OPEN_SEAL) + JSON.stringify(half) + "\nSubject: half\r\n",
    );
    // A sealed message whose content changed after its seal (torn, or damaged).
    const torn = { ...envelope, id: "01m80000000000ee" };
    const tornBody = JSON.stringify(torn) + "\nSubject: torn\r\n\r\nbody\r\n";
    const wrongDigest = createHash("sha256").update(tornBody + "x").digest("hex");
    await writeFile(
      join(queue, `${torn.id}.msg`),
      `SEALED ${String(tornBody.length).padStart(16, "0")} ${wrongDigest}\n${tornBody}`,
    );

    const server = await startServer({
      dataDir,
      config: { "domains/example.test/users": "alice\n" },
    });
    try {
      const [stored] = await eventually(async () => {
        const m = await maildirMessages(dataDir, "example.test", "alice");
        return m.length > 0 ? m : undefined;
      });
      assert.equal(
        stored,
        "Return-Path: <old@client.test>\nDelivered-To: alice@example.test\nSubject: left over\n\nstill here\n",
      );
      await server.waitForLog(new RegExp(`qid=${id} event=recovered pending=1`));
      await server.waitForLog(
        /event=quarantined .*01m80000000000bb\.msg reason="envelope is not valid JSON"/,
      );
      await server.waitForLog(
        /event=quarantined .*01m80000000000ee\.msg reason="content does not match its seal"/,
      );
      await server.waitForLog(
        /qid=01m80000000000dd event=unfinished action=removed reason="never acknowledged"/,
      );
      assert.deepEqual((await readdir(join(dataDir, "spool", "corrupt"))).sort(), [
        "01m80000000000bb.msg",
        "01m80000000000ee.msg",
      ]);
      await eventually(async () => (await readdir(queue)).length === 0 ? true : undefined);
      assert.equal((await maildirMessages(dataDir, "example.test", "alice")).length, 1);
      assert.equal(
        await readFile(join(dataDir, "spool", "corrupt", "01m80000000000bb.msg"), "utf8"),
        "{not json\nSubject: broken\r\n\r\n",
      );
      assert.deepEqual(await readdir(join(dataDir, "spool", "incoming")), []);
    } finally {
      await cleanup(server);
    }
  });

  it("starts when corrupt/ already holds a name, and quarantines beside it, never over it", async () => {
    const dataDir = await tempDir("postern-data-");
    const queue = join(dataDir, "spool", "queue");
    const corrupt = join(dataDir, "spool", "corrupt");
    await mkdir(queue, { recursive: true });
    // The audit's case: start-up stopped with EISDIR from the rename.
    await mkdir(join(corrupt, "junk.txt", "inner"), { recursive: true });
    await writeFile(join(queue, "junk.txt"), "junk");
    // And a quarantined message that a second file of its name replaced.
    await writeFile(join(corrupt, "01m80000000000bb.msg"), "from an earlier start");
    await writeFile(join(queue, "01m80000000000bb.msg"), "{not json\n");
    const server = await startServer({
      dataDir,
      config: { "domains/example.test/users": "alice\n" },
    });
    try {
      await server.waitForLog(
        /event=quarantined .*corrupt\/junk\.txt\.1 reason="not a spool file"/,
      );
      await server.waitForLog(
        /event=quarantined .*corrupt\/01m80000000000bb\.msg\.1 reason="envelope is not valid JSON"/,
      );
      assert.deepEqual((await readdir(corrupt)).sort(), [
        "01m80000000000bb.msg",
        "01m80000000000bb.msg.1",
        "junk.txt",
        "junk.txt.1",
      ]);
      assert.equal(
        await readFile(join(corrupt, "01m80000000000bb.msg"), "utf8"),
        "from an earlier start",
      );
      const result = await swaks(server, ["--to", "alice@example.test"]);
      assert.ok(
        replies(result.stdout).some((l) => l.startsWith("250 2.0.0 Ok: queued as")),
        result.stdout,
      );
    } finally {
      await cleanup(server);
    }
  });
});
