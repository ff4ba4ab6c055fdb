/**
 * Settings past what their use can take, end to end: a duration no timer
 * can wait is refused by `check`, by `serve` at start-up and by a reload,
 * each naming the setting and its maximum, instead of passing and then
 * crashing the server at its first SMTP connection; a port past 65535 is
 * refused by `check`, naming the setting.
 */

import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { logMark, nextReload, serveUntilExit } from "./config_helpers.ts";
import {
  cleanup,
  posternCommand,
  rawSession,
  run,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";

const HUGE_IDLE = "smtp:\n  idle_timeout: 1e308\n";
const MAXIMUM = /smtp\.idle_timeout must be at most 24d20h31m23\.647s \(2147483647 ms/;

describe("a duration longer than a timer can wait", () => {
  it("is refused by check, naming the setting, its line and its maximum", async () => {
    const dir = await tempDir();
    await writeTree(dir, { "postern.yaml": HUGE_IDLE });
    const [cmd, ...args] = posternCommand(["check", "--config", dir]);
    const result = await run(cmd!, args);
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, new RegExp(`postern\\.yaml:2: ${MAXIMUM.source}`));
    assert.doesNotMatch(result.stderr, /RangeError|at \S+ \(/);
  });

  it("stops serve at start-up with a non-zero exit and the setting named", async () => {
    const dir = await tempDir();
    await writeTree(dir, { "postern.yaml": `smtp:\n  command_timeout: "1${"0".repeat(400)}"\n` });
    const result = await serveUntilExit(dir, await tempDir("postern-data-"));
    assert.equal(result.listening, false, `it started:\n${result.stderr}`);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /configuration error:\n.*smtp\.command_timeout must be at most /);
  });

  it("saved into a running server, keeps the last good policy and the server serving", async () => {
    const server = await startServer({ config: { "postern.yaml": "smtp:\n  idle_timeout: 1m\n" } });
    try {
      const mark = logMark(server);
      await writeFile(join(server.configDir, "postern.yaml"), HUGE_IDLE);
      const line = await nextReload(server, mark);
      assert.match(line, /policy reload failed/);
      assert.match(line, MAXIMUM);
      // The next connection gets its greeting and a session; the old code
      // crashed the process here (socket timeout of Infinity).
      const session = await rawSession(server);
      assert.match(await session.read(), /^220 /);
      assert.match(await session.send("EHLO client.test"), /^250 /);
      assert.match(await session.send("QUIT"), /^221 /);
      session.close();
      assert.equal(server.child.exitCode, null, server.stderr());
    } finally {
      await cleanup(server);
    }
  });
});

describe("a listen address with a port past 65535", () => {
  it("is refused by check, in postern.yaml and on the command line, naming the setting", async () => {
    const dir = await tempDir();
    await writeTree(dir, { "postern.yaml": 'smtp:\n  listen: ["127.0.0.1:99999"]\n' });
    const [cmd, ...args] = posternCommand(["check", "--config", dir]);
    const result = await run(cmd!, args);
    assert.equal(result.code, 1, result.stdout);
    assert.match(
      result.stderr,
      /postern\.yaml:2: smtp\.listen\.0 must have a port from 0 to 65535/,
    );
    const [cmd2, ...args2] = posternCommand(["check", "--listen", "127.0.0.1:99999"]);
    const cli = await run(cmd2!, args2);
    assert.equal(cli.code, 1, cli.stdout);
    assert.match(cli.stderr, /--listen "127\.0\.0\.1:99999" must have a port from 0 to 65535/);
  });
});
