/**
 * Starts Postern listening on several SMTP addresses at once, for tests
 * that need more than the harness's one `--listen` (which replaces
 * smtp.listen): the IPv4 and IPv6 loopback, say.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import {
  cleanup,
  eventually,
  posternCommand,
  ROOT,
  type Server,
  tempDir,
  writeTree,
} from "../e2e/harness.ts";

/** True when this machine can listen on the IPv6 loopback address. */
export async function ipv6Loopback(): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(0, "::1", () => s.close(() => resolve(true)));
  });
}

/**
 * Like the harness's startServer, with more listen addresses: the harness
 * passes one `--listen`, which replaces smtp.listen, so a server that also
 * listens on [::1] is started here with several. Every address asks for
 * port 0: the kernel picks free ports, and the server's `event=listening`
 * lines (one per address, in the order given) say which.
 */
export async function startListening(
  config: Record<string, string>,
  extraListen: string[],
): Promise<{ server: Server; addresses: string[] }> {
  const configDir = await tempDir("postern-config-");
  const dataDir = await tempDir("postern-data-");
  await writeTree(configDir, config);
  const [cmd, ...args] = posternCommand([
    "serve",
    "--config",
    configDir,
    "--data",
    dataDir,
    "--listen",
    "127.0.0.1:0",
    ...extraListen.flatMap((a) => ["--listen", a]),
    "--admin-listen",
    "127.0.0.1:0",
  ]);
  const child = spawn(cmd!, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const mailLog: string[] = [];
  let stderr = "";
  let partial = "";
  child.stdout!.on("data", (chunk: Uint8Array) => {
    partial += new TextDecoder().decode(chunk);
    const lines = partial.split("\n");
    partial = lines.pop()!;
    mailLog.push(...lines);
  });
  child.stderr!.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  let done = false;
  void exited.then(() => done = true);
  const waitForLog = async (match: RegExp, timeoutMs = 15_000) =>
    await eventually(
      () => {
        const line = mailLog.find((l) => match.test(l));
        if (line === undefined && done) {
          throw new Error(`server exited before logging ${match}; stderr:\n${stderr}`);
        }
        return Promise.resolve(line);
      },
      timeoutMs,
      `a log line matching ${match}; stderr:\n${stderr}`,
    );
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  const server: Server = {
    host: "127.0.0.1",
    port: 0,
    configDir,
    dataDir,
    mailLog,
    stderr: () => stderr,
    waitForLog,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    child,
  };
  let addresses: string[];
  try {
    // One event=listening line per address.
    addresses = await eventually(
      () => {
        if (done) throw new Error(`server exited at start-up; stderr:\n${stderr}`);
        const found = mailLog.filter((l) => l.includes("event=listening"))
          .map((l) => /\baddr=(\S+)/.exec(l)?.[1] ?? "");
        return Promise.resolve(found.length === 1 + extraListen.length ? found : undefined);
      },
      30_000,
      "the listeners",
    );
  } catch (err) {
    await cleanup(server);
    throw err;
  }
  const portOf = (address: string | undefined) => Number(/:(\d+)$/.exec(address ?? "")?.[1]);
  server.port = portOf(addresses[0]);
  assert.match(addresses[0]!, /^127\.0\.0\.1:\d+$/);
  return { server, addresses };
}
