/**
 * Hot reload of the policy files, end to end: the real server and swaks,
 * and the configuration directory changed on disk in every way an editor,
 * a deployment tool or Kubernetes writes it (users, aliases, domain
 * folders, broken files, bursts, SIGHUP, a ConfigMap's symlink swap).
 * Certificates, rate limits and hook grants changed live are in
 * policy_reload_live_test.ts.
 */

import assert from "node:assert/strict";
import { mkdir, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  rawSession,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";
import {
  logLines,
  rcptReply,
  untilLog,
  untilRcpt,
  writeInPlace,
} from "./policy_reload_fixtures.ts";

/** Writes a temporary file and renames it over the target, as atomic savers do. */
async function writeAndRename(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  await writeFile(temp, text);
  await rename(temp, path);
}

describe("policy reload", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  it("applies a user added by an in-place write, and a 550 once it is removed", async () => {
    const users = join(server.configDir, "domains/example.test/users");
    assert.match(await rcptReply(server, "bob@example.test"), /^550 5\.1\.1 /);
    await writeInPlace(users, "alice\nbob\n");
    await untilRcpt(server, "bob@example.test", /^250 /);
    await writeInPlace(users, "alice\n");
    await untilRcpt(server, "bob@example.test", /^550 5\.1\.1 /);
    assert.match(await rcptReply(server, "alice@example.test"), /^250 /);
  });

  it("applies an alias written to a temporary file and renamed into place", async () => {
    const aliases = join(server.configDir, "domains/example.test/aliases");
    assert.match(await rcptReply(server, "sales@example.test"), /^550 5\.1\.1 /);
    await writeAndRename(aliases, "sales: alice\n");
    await untilRcpt(server, "sales@example.test", /^250 /);
    // And the alias is used for delivery, not only at RCPT.
    const sent = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      "sales@example.test",
      "--header",
      "Subject: via the new alias",
    ]);
    assert.equal(sent.code, 0, sent.stdout);
    await eventually(
      async () => {
        const messages = await maildirMessages(server.dataDir, "example.test", "alice");
        return messages.find((m) => m.includes("Subject: via the new alias"));
      },
      10_000,
      "delivery through the new alias",
    );
  });

  it("applies a file deleted and created again", async () => {
    const users = join(server.configDir, "domains/example.test/users");
    await unlink(users);
    await writeFile(users, "alice\ncarol\n");
    await untilRcpt(server, "carol@example.test", /^250 /);
  });

  it("accepts mail for a new domain folder, and refuses it once the folder is gone", async () => {
    const folder = join(server.configDir, "domains/new.test");
    assert.match(await rcptReply(server, "dan@new.test"), /^550 5\.7\.1 /);
    await mkdir(folder);
    await writeFile(join(folder, "users"), "dan\n");
    await untilRcpt(server, "dan@new.test", /^250 /);
    await rm(folder, { recursive: true });
    await untilRcpt(server, "dan@new.test", /^550 5\.7\.1 /);
  });

  it("applies users and aliases added and removed by every kind of write", async () => {
    const users = join(server.configDir, "domains/example.test/users");
    const aliases = join(server.configDir, "domains/example.test/aliases");
    const writers: Array<[string, (path: string, text: string) => Promise<void>]> = [
      ["in place", writeInPlace],
      ["rename", writeAndRename],
      ["delete and recreate", async (path, text) => {
        await rm(path, { force: true });
        await writeFile(path, text);
      }],
    ];
    for (const [kind, write] of writers) {
      const name = kind.replaceAll(" ", "");
      await write(users, `alice\nu${name}\n`);
      await write(aliases, `a${name}: alice\n`);
      await untilRcpt(server, `u${name}@example.test`, /^250 /);
      await untilRcpt(server, `a${name}@example.test`, /^250 /);
      await write(users, "alice\n");
      await write(aliases, "");
      await untilRcpt(server, `u${name}@example.test`, /^550 5\.1\.1 /);
      await untilRcpt(server, `a${name}@example.test`, /^550 5\.1\.1 /);
    }
  });

  it("keeps the last good policy while a file is broken, logs why, and applies the fix", async () => {
    const main = join(server.configDir, "postern.yaml");
    const users = join(server.configDir, "domains/example.test/users");
    const mark = logLines(server);
    await writeInPlace(main, "smtp:\n  max_recipients: [1\n");
    const yamlError = await untilLog(server, /policy reload failed/, mark);
    assert.match(yamlError, /postern\.yaml:\d+: invalid YAML/);
    // A change to another file while the main file is broken changes nothing.
    await writeInPlace(users, "alice\ncarol\nerin\n");
    const mark2 = logLines(server);
    await writeInPlace(main, "smtp:\n  max_recipents: 5\n");
    const schemaError = await untilLog(server, /policy reload failed/, mark2);
    assert.match(schemaError, /postern\.yaml:2: smtp\.max_recipents is not a known setting/);
    assert.match(await rcptReply(server, "alice@example.test"), /^250 /);
    assert.match(await rcptReply(server, "erin@example.test"), /^550 5\.1\.1 /);

    const mark3 = logLines(server);
    await writeInPlace(main, "smtp:\n  max_recipients: 5\n");
    await untilLog(server, /policy reloaded" .*recovered=true/, mark3);
    await untilRcpt(server, "erin@example.test", /^250 /);
  });

  it("never refuses a real user while a file written in place is empty for a while", async () => {
    // The probe of a file left empty must land within the second look's
    // delay; 300 ms is not enough for a new SMTP session on a loaded machine.
    const main = join(server.configDir, "postern.yaml");
    const marked = logLines(server);
    await writeInPlace(main, "reload:\n  removal_delay: 3s\n");
    await untilLog(server, /policy reloaded/, marked);
    const users = join(server.configDir, "domains/example.test/users");
    await writeInPlace(users, "alice\ncarl\n");
    await untilRcpt(server, "carl@example.test", /^250 /);
    // A writer that truncated the file and was not scheduled for longer than
    // every check of the tree: the empty file is loaded. The user stays
    // (removals wait for a second look) and the write then completes.
    const mark = logLines(server);
    await writeInPlace(users, "");
    await untilLog(server, /policy reloaded/, mark);
    const during = await rcptReply(server, "alice@example.test");
    await writeInPlace(users, "alice\ncarl\ndora\n");
    assert.match(during, /^250 /, "alice is not refused while the file is empty");
    await untilRcpt(server, "dora@example.test", /^250 /);
    // The second look finds the write complete: nobody was removed.
    await new Promise((resolve) => setTimeout(resolve, 3_300));
    assert.match(await rcptReply(server, "alice@example.test"), /^250 /);
    assert.match(await rcptReply(server, "carl@example.test"), /^250 /);
    // A real removal still lands, a moment later.
    await writeInPlace(users, "alice\n");
    await untilRcpt(server, "carl@example.test", /^550 5\.1\.1 /);
    assert.match(await rcptReply(server, "alice@example.test"), /^250 /);
  });

  it("settles on the last of a burst of 100 edits", async () => {
    const users = join(server.configDir, "domains/example.test/users");
    for (let i = 0; i < 100; i++) await writeInPlace(users, `burst${i}\n`);
    await untilRcpt(server, "burst99@example.test", /^250 /);
    // Removals follow a moment later, after a second look (a file written
    // in place is empty for a moment).
    await untilRcpt(server, "alice@example.test", /^550 5\.1\.1 /);
    await untilRcpt(server, "burst98@example.test", /^550 5\.1\.1 /);
    assert.match(await rcptReply(server, "burst99@example.test"), /^250 /);
    await writeInPlace(users, "alice\n");
    await untilRcpt(server, "alice@example.test", /^250 /);
  });

  it("keeps a transaction on the policy it started with", async () => {
    const users = join(server.configDir, "domains/example.test/users");
    const s = await rawSession(server);
    assert.match(await s.read(), /^220 /);
    assert.match(await s.send("EHLO client.test"), /^250 /);
    assert.match(await s.send("MAIL FROM:<sender@client.test>"), /^250 /);
    const mark = logLines(server);
    await writeInPlace(users, "alice\nfrank\n");
    await untilLog(server, /policy reloaded/, mark);
    // The open transaction still sees the policy of its MAIL FROM ...
    assert.match(await s.send("RCPT TO:<frank@example.test>"), /^550 5\.1\.1 /);
    // ... and the next one sees the new policy.
    assert.match(await s.send("RSET"), /^250 /);
    assert.match(await s.send("MAIL FROM:<sender@client.test>"), /^250 /);
    assert.match(await s.send("RCPT TO:<frank@example.test>"), /^250 /);
    s.close();
  });

  it("keeps the last good policy when postern.yaml disappears, and applies it when it is back", async () => {
    const main = join(server.configDir, "postern.yaml");
    await writeInPlace(main, "domains:\n  extra.test:\n    any_user: true\n");
    await untilRcpt(server, "x@extra.test", /^250 /);
    const mark = logLines(server);
    await unlink(main);
    const error = await untilLog(server, /policy reload failed/, mark);
    assert.match(error, /postern\.yaml: the file is gone/);
    assert.match(await rcptReply(server, "x@extra.test"), /^250 /);
    // Back with settings (an empty file would be taken for a save in progress).
    await writeFile(main, "log:\n  level: info\n");
    await untilRcpt(server, "x@extra.test", /^550 5\.7\.1 /);
  });

  it("reloads on SIGHUP", async () => {
    const mark = logLines(server);
    // process.kill, not child.kill: Deno's ChildProcess sends one signal only.
    process.kill(server.child.pid!, "SIGHUP");
    const line = await untilLog(server, /policy reloaded/, mark);
    assert.match(line, /cause=signal/);
  });

  it("reports a setting that needs a restart and keeps the running value", async () => {
    const main = join(server.configDir, "postern.yaml");
    const mark = logLines(server);
    await writeInPlace(main, "hostname: renamed.example\n");
    const warning = await untilLog(server, /takes effect after a restart/, mark);
    assert.match(warning, /field=hostname/);
    const s = await rawSession(server);
    const greeting = await s.read();
    s.close();
    assert.doesNotMatch(greeting, /renamed\.example/);
    await writeInPlace(main, "");
  });
});

describe("policy reload from a Kubernetes ConfigMap (symlink swap)", () => {
  let server: Server;
  let configDir: string;
  const version = async (name: string, domain: string) => {
    await mkdir(join(configDir, name));
    await writeFile(
      join(configDir, name, "postern.yaml"),
      `domains:\n  ${domain}:\n    any_user: true\n`,
    );
  };
  before(async () => {
    // The layout the kubelet writes: a timestamped folder, `..data` linking
    // to it, and each file a link through `..data`.
    configDir = await tempDir("postern-configmap-");
    await version("..2026_11_27_00_00_00.1", "one.test");
    await symlink("..2026_11_27_00_00_00.1", join(configDir, "..data"));
    await symlink("..data/postern.yaml", join(configDir, "postern.yaml"));
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
  });

  it("applies the new version once ..data is swapped", async () => {
    assert.match(await rcptReply(server, "anyone@one.test"), /^250 /);
    await version("..2026_11_27_00_05_00.2", "two.test");
    await symlink("..2026_11_27_00_05_00.2", join(configDir, "..data_tmp"));
    await rename(join(configDir, "..data_tmp"), join(configDir, "..data"));
    await rm(join(configDir, "..2026_11_27_00_00_00.1"), { recursive: true });
    await untilRcpt(server, "anyone@two.test", /^250 /);
    await untilRcpt(server, "anyone@one.test", /^550 5\.7\.1 /);
  });
});
