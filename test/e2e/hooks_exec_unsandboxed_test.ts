/**
 * Executable hooks without `hooks.allow_unsandboxed_exec`, end to end: an
 * executable hook file stops the server at start-up, with an error that
 * names the file and the setting; the same file without the execute bit is
 * no hook, and the server starts and delivers. The hooks' protocol is in
 * hooks_exec_test.ts.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  eventually,
  maildirMessages,
  posternCommand,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";
import { queuedId } from "./hooks_exec_fixtures.ts";

/** Runs a command that must end by itself; a command killed by the limit fails the test. */
function runBounded(
  cmd: string,
  args: string[],
  limitMs: number,
): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

describe("executable hooks without allow_unsandboxed_exec", () => {
  it("refuse to start, naming the file and the setting; not executable, it is ignored", async () => {
    const configDir = await tempDir("postern-config-");
    const dataDir = await tempDir("postern-data-");
    let server: Server | undefined;
    try {
      await writeTree(configDir, {
        "domains/example.test/users": "alice\n",
        "hooks/post-data": "#!/bin/sh\necho 'must not run'\nexit 20\n",
      });
      const hook = join(configDir, "hooks", "post-data");
      await chmod(hook, 0o755);
      const [cmd, ...args] = posternCommand([
        "serve",
        "--config",
        configDir,
        "--data",
        dataDir,
        "--listen",
        "127.0.0.1:0",
      ]);
      const refused = await runBounded(cmd!, args, 30_000);
      assert.equal(refused.signal, null, `still running after 30 s; stderr:\n${refused.stderr}`);
      assert.equal(refused.code, 1, refused.stderr);
      assert.ok(refused.stderr.includes("postern: hook error:\n"), refused.stderr);
      assert.ok(refused.stderr.includes(`"${hook}"`), refused.stderr);
      assert.ok(refused.stderr.includes("hooks.allow_unsandboxed_exec: true"), refused.stderr);

      // The same file without the execute bit is no hook: the server starts.
      await chmod(hook, 0o644);
      server = await startServer({ configDir, dataDir });
      assert.ok(
        server.stderr().includes(`hook file is not executable; ignored" path=${hook}`),
        server.stderr(),
      );
      const result = await swaks(server, ["--to", "alice@example.test"]);
      queuedId(result.stdout);
      await eventually(async () => {
        const m = await maildirMessages(dataDir, "example.test", "alice");
        return m.length > 0 ? m : undefined;
      });
    } finally {
      await server?.stop();
      await rm(configDir, { recursive: true, force: true });
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
