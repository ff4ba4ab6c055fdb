/**
 * Test harness for end-to-end scenarios: starts the real server as a child
 * process and talks to it over loopback with real clients.
 *
 * `POSTERN_TARGET` selects what runs: `deno` (the source under Deno),
 * `bun` (the source under Bun) or `binary` (the compiled `dist/postern`).
 * By default the source runs under the runtime that runs the tests.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { after } from "node:test";

/** What the tests run against. */
export const TARGET: "deno" | "bun" | "binary" = (() => {
  const chosen = process.env["POSTERN_TARGET"];
  if (chosen === "deno" || chosen === "bun" || chosen === "binary") return chosen;
  return "Bun" in globalThis ? "bun" : "deno";
})();

/** The command line that starts Postern for {@linkcode TARGET}. */
export function posternCommand(args: string[]): string[] {
  switch (TARGET) {
    case "binary":
      return [join(ROOT, "dist", "postern"), ...args];
    case "bun":
      return [runtimeBinary("bun"), "run", join(ROOT, "src", "main.ts"), ...args];
    case "deno":
      return [runtimeBinary("deno"), "run", "-A", join(ROOT, "src", "main.ts"), ...args];
  }
}

function runtimeBinary(name: "deno" | "bun"): string {
  const running = "Bun" in globalThis ? "bun" : "deno";
  return running === name ? process.execPath : name;
}

/** Temporary directories made by {@linkcode tempDir}, removed when the test file ends. */
const made = new Set<string>();
/** Servers started and not yet stopped, stopped when the test file ends. */
const running = new Set<Server>();

// Registered once per test file (Bun: once per run): stop what a test left
// running and remove every temporary directory, passed or failed. A
// directory made in a `before` hook serves the tests after it, so it goes
// when the file ends rather than after each test.
after(async () => {
  for (const server of [...running]) await server.kill();
  for (const dir of [...made]) {
    await rm(dir, { recursive: true, force: true });
    made.delete(dir);
  }
});

// Bun runs that hook at the end of the first file only: what later files
// left goes when the process exits (an event Deno's test runner never sends).
process.on("exit", () => {
  for (const server of running) {
    try {
      process.kill(server.child.pid!, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** Creates a fresh temporary directory for one test; removed when the test file ends. */
export async function tempDir(prefix = "postern-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Writes `files` (relative path → content) under `dir`. */
export async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

/** A running Postern process. */
export interface Server {
  host: string;
  port: number;
  configDir: string;
  dataDir: string;
  /** Mail log lines (stdout) so far. */
  mailLog: string[];
  /** Application log (stderr) so far. */
  stderr(): string;
  /** Resolves with the first mail log line matching, or rejects on timeout. */
  waitForLog(match: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  child: ChildProcess;
}

/** Options of {@linkcode startServer}. */
export interface StartOptions {
  /** Files of the configuration directory. */
  config?: Record<string, string>;
  /** Reuse directories (for restarts). */
  configDir?: string;
  dataDir?: string;
  /** Reuse a port (for restarts); default picks a free one. */
  port?: number;
  /** Run on the embedded default configuration (no --config). */
  noConfig?: boolean;
  /** `--admin-listen`; default: a free loopback port. */
  adminListen?: string;
  /** Variables added to (or replacing those of) the test's own environment. */
  env?: Record<string, string>;
  /**
   * A command that runs Postern's command line (appended to it), such as
   * `["bash", "-c", 'exec 47<>file; exec "$@"', "bash"]` to start Postern
   * holding extra descriptors.
   */
  wrapper?: string[];
  /** Working directory of the server; default the repository's root. */
  cwd?: string;
}

/** Starts Postern with a temporary config and data directory. */
export async function startServer(options: StartOptions = {}): Promise<Server> {
  const configDir = options.configDir ?? await tempDir("postern-config-");
  const dataDir = options.dataDir ?? await tempDir("postern-data-");
  if (options.config) await writeTree(configDir, options.config);
  // Port 0 unless the test names one: the kernel picks a port nothing else
  // holds, and the listening line says which (no race with another bind).
  const requestedPort = options.port ?? 0;
  const [cmd, ...args] = posternCommand([
    "serve",
    ...(options.noConfig ? [] : ["--config", configDir]),
    "--data",
    dataDir,
    "--listen",
    `127.0.0.1:${requestedPort}`,
    // Servers run side by side: each admin API on a port of its own.
    "--admin-listen",
    options.adminListen ?? "127.0.0.1:0",
  ]);
  const [program, ...programArgs] = [...(options.wrapper ?? []), cmd!, ...args];
  const child = spawn(program!, programArgs, {
    cwd: options.cwd ?? ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  const mailLog: string[] = [];
  let stderr = "";
  let partial = "";
  const waiters: Array<{ match: RegExp; resolve: (line: string) => void }> = [];
  child.stdout!.on("data", (chunk: Uint8Array) => {
    partial += new TextDecoder().decode(chunk);
    const lines = partial.split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      mailLog.push(line);
      for (const w of [...waiters]) {
        if (w.match.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
  const exited = new Promise<void>((res) => child.once("exit", () => res()));

  const waitForLog = (match: RegExp, timeoutMs = 15_000) => {
    const found = mailLog.find((l) => match.test(l));
    if (found) return Promise.resolve(found);
    return new Promise<string>((res, rej) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.findIndex((w) => w.match === match), 1);
        rej(new Error(`no log line matching ${match} within ${timeoutMs} ms; stderr:\n${stderr}`));
      }, timeoutMs);
      waiters.push({
        match,
        resolve: (line) => {
          clearTimeout(timer);
          res(line);
        },
      });
      exited.then(() => {
        clearTimeout(timer);
        rej(new Error(`server exited before logging ${match}; stderr:\n${stderr}`));
      });
    });
  };

  const listening = await waitForLog(/event=listening/, 30_000).catch((err) => {
    // Not left running behind a start-up that timed out.
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    throw err;
  });
  const port = Number(/addr=\S*:(\d+)/.exec(listening)?.[1] ?? requestedPort);
  const signal = async (sig: NodeJS.Signals) => {
    const signalTo = (which: NodeJS.Signals) => {
      // process.kill rather than child.kill, which under Deno sends one
      // signal per child at most.
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(child.pid!, which);
      } catch {
        // Already gone.
      }
    };
    signalTo(sig);
    // A server that does not stop within 30 s is a failure to report, not
    // a test run to hang: kill it and say what it logged.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((res) => timer = setTimeout(() => res("late"), 30_000));
    const outcome = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (outcome === "late") {
      signalTo("SIGKILL");
      await exited;
      throw new Error(`the server did not exit within 30 s of ${sig}; stderr:\n${stderr}`);
    }
  };
  const server: Server = {
    host: "127.0.0.1",
    port,
    configDir,
    dataDir,
    mailLog,
    stderr: () => stderr,
    waitForLog,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    child,
  };
  running.add(server);
  exited.then(() => running.delete(server));
  return server;
}

/**
 * Stops a server and removes its directories. A server that never started
 * (its `before` hook failed) is skipped: throwing here would hide that
 * hook's error, which Deno's node:test then does not report.
 */
export async function cleanup(server: Server | undefined): Promise<void> {
  if (server === undefined) return;
  await server.stop();
  await rm(server.configDir, { recursive: true, force: true });
  await rm(server.dataDir, { recursive: true, force: true });
}

/**
 * Finds a free loopback TCP port for a test to name in a configuration.
 *
 * A port from `listen(0)` is one of the kernel's ephemeral ports, which it
 * hands out again to the next outgoing connection or `listen(0)` anywhere on
 * the machine: on a busy machine such a port was taken between this check and
 * the server's bind (EADDRINUSE). So the port is drawn at random below the
 * ephemeral range, where the kernel never assigns one by itself, and checked
 * free; only another test that draws the same number could clash.
 */
export async function freePort(): Promise<number> {
  const { lowest } = ephemeralRange();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (lowest - 10_000));
    if (await isFree(port)) return port;
  }
  return await listenOnce(0);
}

function ephemeralRange(): { lowest: number } {
  try {
    const text = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8");
    const lowest = Number(text.trim().split(/\s+/)[0]);
    if (Number.isInteger(lowest) && lowest > 12_000) return { lowest };
  } catch {
    // Not Linux: the usual lower bound of the ephemeral range.
  }
  return { lowest: 32_768 };
}

async function isFree(port: number): Promise<boolean> {
  try {
    await listenOnce(port);
    return true;
  } catch {
    return false;
  }
}

async function listenOnce(port: number): Promise<number> {
  const { createServer } = await import("node:net");
  return await new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => {
      const address = s.address();
      const bound = typeof address === "object" && address ? address.port : 0;
      s.close(() => res(bound));
    });
  });
}

import { ROOT } from "./clients.ts";

export {
  eventually,
  type Login,
  maildirMessages,
  outboundBaseYaml,
  queuedId,
  rawSession,
  replies,
  ROOT,
  run,
  type RunResult,
  submitMail,
  swaks,
} from "./clients.ts";
