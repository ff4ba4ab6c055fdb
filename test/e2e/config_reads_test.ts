/**
 * What the server reads when the configuration changes under it, end to
 * end: a domain folder it may not enter is an error (start-up refused, the
 * last good policy kept on a reload), never a domain without users or DKIM
 * keys; and postern.yaml caught empty by a truncate-then-write save keeps
 * the policy in force, not the defaults.
 *
 * Run as root, the server runs without the power to read past
 * permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as a service user
 * would: that is what makes a `chmod 000` folder unreadable to it.
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { chmod, open } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { ehloSize, logMark, nextReload, serveUntilExit, untilLog } from "./config_helpers.ts";
import {
  cleanup,
  posternCommand,
  run,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

/** Runs Postern without root's power to read past permissions; nothing when not root. */
const AS_SERVICE_USER = process.getuid?.() === 0
  ? ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
  : [];

const KEY = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

/** The reply to RCPT TO for `to`. */
async function rcptReply(server: Server, to: string): Promise<string> {
  const result = await swaks(server, [
    "--from",
    "s@client.test",
    "--to",
    to,
    "--quit-after",
    "RCPT",
  ]);
  const lines = result.stdout.split("\n");
  const sent = lines.findIndex((l) => l.startsWith(" -> RCPT TO:"));
  const answer = lines.slice(sent + 1).find((l) => /^<(-|~|\*\*) /.test(l));
  return answer?.replace(/^<\S*\s+/, "") ?? `(no RCPT reply)\n${result.stdout}${result.stderr}`;
}

describe("a domain folder the server may not enter", () => {
  it("on a reload keeps the last good policy: its users stay, and come back readable", async () => {
    const server = await startServer({
      config: { "domains/example.org/users": "bob\n" },
      wrapper: AS_SERVICE_USER,
    });
    const folder = join(server.configDir, "domains/example.org");
    try {
      assert.match(await rcptReply(server, "bob@example.org"), /^250 /);
      const mark = logMark(server);
      await chmod(folder, 0);
      const line = await nextReload(server, mark);
      assert.match(line, /policy reload failed; the last good policy stays in force/);
      assert.match(line, /domains\/example\.org\/users: cannot read the file: .*permission denied/);
      // The old code swapped in a policy without bob: 550 5.1.1.
      assert.match(await rcptReply(server, "bob@example.org"), /^250 /);
      const again = logMark(server);
      await chmod(folder, 0o755);
      await untilLog(server, /policy reloaded" .*recovered=true/, again);
      assert.match(await rcptReply(server, "bob@example.org"), /^250 /);
    } finally {
      await chmod(folder, 0o755);
      await cleanup(server);
    }
  });

  it("makes check and serve refuse the configuration, naming the file", async () => {
    const dir = await tempDir();
    await writeTree(dir, {
      "domains/example.org/users": "bob\n",
      "domains/example.org/dkim/sel1.pem": KEY,
    });
    const check = () => {
      const [program, ...args] = [
        ...AS_SERVICE_USER,
        ...posternCommand(["check", "--config", dir]),
      ];
      return run(program!, args);
    };
    assert.equal((await check()).code, 0);

    // The DKIM keys' folder: the old code said OK, and signed nothing.
    const dkim = join(dir, "domains/example.org/dkim");
    await chmod(dkim, 0);
    try {
      const result = await check();
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, /dkim: cannot read the DKIM key folder: .*permission denied/);
    } finally {
      await chmod(dkim, 0o755);
    }

    // The domain's folder: the old code said OK, and refused bob.
    const folder = join(dir, "domains/example.org");
    await chmod(folder, 0);
    try {
      const result = await check();
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, /example\.org\/users: cannot read the file: .*permission denied/);
      const serve = await serveUntilExit(dir, await tempDir("postern-data-"), AS_SERVICE_USER);
      assert.equal(serve.listening, false, `it started:\n${serve.stderr}`);
      assert.equal(serve.code, 1, serve.stderr);
      assert.match(
        serve.stderr,
        /configuration error:\n.*example\.org\/users: cannot read the file/,
      );
    } finally {
      await chmod(folder, 0o755);
    }
  });
});

describe("a save that truncates postern.yaml, then writes it", () => {
  it("keeps the settings in force while the file is empty, and applies the next save", async () => {
    const server = await startServer({
      config: {
        "postern.yaml": "smtp:\n  max_message_size: 1MiB\n",
        "domains/example.test/users": "alice\n",
      },
    });
    try {
      assert.equal(await ehloSize(server), 1024 * 1024);
      const main = await open(join(server.configDir, "postern.yaml"), "r+");
      try {
        // The editor's first step: the file is empty until its second.
        const mark = logMark(server);
        await main.truncate(0);
        const line = await nextReload(server, mark);
        // The old code applied the defaults here: SIZE 52428800.
        assert.equal(await ehloSize(server), 1024 * 1024);
        assert.match(line, /policy reload failed; the last good policy stays in force/);
        assert.match(line, /postern\.yaml: the file is empty, most likely a save in progress/);
        assert.match(await rcptReply(server, "alice@example.test"), /^250 /);
        const again = logMark(server);
        await main.write("smtp:\n  max_message_size: 2MiB\n", 0);
        await untilLog(server, /policy reloaded" .*recovered=true/, again);
      } finally {
        await main.close();
      }
      assert.equal(await ehloSize(server), 2 * 1024 * 1024);
    } finally {
      await cleanup(server);
    }
  });
});
