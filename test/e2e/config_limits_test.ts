/**
 * Settings past what their use can take, end to end: a duration no timer
 * can wait is refused by `check`, by `serve` at start-up and by a reload,
 * each naming the setting and its maximum, instead of passing and then
 * crashing the server at its first SMTP connection.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  cleanup,
  eventually,
  posternCommand,
  rawSession,
  run,
  type Server,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";

const HUGE_IDLE = "smtp:\n  idle_timeout: 1e308\n";
const MAXIMUM = /smtp\.idle_timeout must be at most 24d20h31m23\.647s \(2147483647 ms/;

/**
 * Runs `postern serve` until it exits, or until it listens (then it is
 * stopped, and `listening` says so).
 */
function serveUntilExit(
  configDir: string,
  dataDir: string,
): Promise<{ code: number | null; stderr: string; listening: boolean }> {
  const [cmd, ...args] = posternCommand([
    "serve",
    "--config",
    configDir,
    "--data",
    dataDir,
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
  ]);
  return new Promise((resolve) => {
    const child = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let listening = false;
    child.stderr!.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
    child.stdout!.on("data", (chunk: Uint8Array) => {
      if (!listening && new TextDecoder().decode(chunk).includes("event=listening")) {
        listening = true;
        child.kill("SIGKILL");
      }
    });
    child.once("exit", (code) => resolve({ code, stderr, listening }));
  });
}

/** Waits for an application log line matching `match` after the first `from` lines. */
async function untilLog(server: Server, match: RegExp, from: number): Promise<string> {
  try {
    return await eventually(
      () => Promise.resolve(server.stderr().split("\n").slice(from).find((l) => match.test(l))),
      10_000,
      `a log line matching ${match}`,
    );
  } catch (err) {
    throw new Error(`${err}; server log:\n${server.stderr()}`);
  }
}

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
      const mark = server.stderr().split("\n").length - 1;
      await writeFile(join(server.configDir, "postern.yaml"), HUGE_IDLE);
      const line = await untilLog(server, /policy reload(ed| failed)/, mark);
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
