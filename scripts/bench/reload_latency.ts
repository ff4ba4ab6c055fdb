/**
 * Policy reload latency: from a completed save to the first SMTP
 * transaction that sees it, for each way a configuration is written.
 *
 * Starts Postern (on the runtime named by the first argument, deno or bun)
 * on a configuration directory laid out as a Kubernetes ConfigMap (the main
 * file a link through `..data`) with a real `domains/` folder beside it.
 * For each kind of write, EDITS times: make one edit that adds a new
 * address, note the time the write returned, then probe over one SMTP
 * connection (RSET, MAIL, RCPT, pipelined; a new transaction takes the
 * policy in force) until RCPT is accepted. Prints median, p99 and max per
 * kind and over all kinds.
 *
 * Usage: deno run -A scripts/bench/reload_latency.ts deno|bun [EDITS]
 *
 * @module
 */

import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const runtime = process.argv[2] === "bun" ? "bun" : "deno";
const EDITS = Number(process.argv[3] ?? 50);
/** Longest wait for one edit to be seen before it counts as lost. */
const EDIT_TIMEOUT_MS = 5_000;
const repo = resolve(fileURLToPath(new URL("../..", import.meta.url)));

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "postern-reload-bench-"));
  const config = join(root, "config");
  const users = join(config, "domains/example.test/users");
  await mkdir(join(config, "domains/example.test"), { recursive: true });
  await writeFile(users, "user\n");
  let version = 0;
  /** Writes the ConfigMap's next version and swaps `..data` to it. */
  async function configMapVersion(domain: string): Promise<void> {
    const dir = `..v${++version}`;
    await mkdir(join(config, dir));
    await writeFile(
      join(config, dir, "postern.yaml"),
      // The probe asks RCPT over one session until the edit shows, and
      // each miss is a 550: the hard error limit (20 by default, as
      // Postfix's) would end that session after 20 misses.
      `smtp:\n  hard_error_limit: 0\ndomains:\n  ${domain}:\n    any_user: true\n`,
    );
    await symlink(dir, join(config, "..data_tmp"));
    await rename(join(config, "..data_tmp"), join(config, "..data"));
    if (version > 1) await rm(join(config, `..v${version - 1}`), { recursive: true });
  }
  await configMapVersion("cm0.test");
  await symlink("..data/postern.yaml", join(config, "postern.yaml"));

  const port = 20000 + Math.floor(Math.random() * 20000);
  const command = runtime === "bun" ? ["bun", "run"] : ["deno", "run", "-A"];
  const server = spawn(
    command[0]!,
    [
      ...command.slice(1),
      join(repo, "src/main.ts"),
      "serve",
      "--config",
      config,
      "--data",
      join(root, "data"),
      "--listen",
      `127.0.0.1:${port}`,
      "--admin-listen",
      "127.0.0.1:0",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  server.stdout!.on("data", (chunk) => stdout += chunk);
  server.stderr!.on("data", (chunk) => stderr += chunk);
  const startDeadline = Date.now() + 60_000;
  while (!stdout.includes("event=listening")) {
    if (Date.now() > startDeadline || server.exitCode !== null) {
      throw new Error(`postern did not start:\n${stderr}`);
    }
    await sleep(50);
  }

  const smtp = await SmtpProbe.open(port);
  const kinds: Array<{ name: string; edit: (i: number) => Promise<string> }> = [
    {
      name: "in-place write",
      edit: async (i) => {
        await writeFile(users, `user\ninplace${i}\n`);
        return `inplace${i}@example.test`;
      },
    },
    {
      name: "write + rename",
      edit: async (i) => {
        await writeFile(`${users}.tmp`, `user\nrenamed${i}\n`);
        await rename(`${users}.tmp`, users);
        return `renamed${i}@example.test`;
      },
    },
    {
      name: "delete + recreate",
      edit: async (i) => {
        await unlink(users);
        await writeFile(users, `user\nrecreated${i}\n`);
        return `recreated${i}@example.test`;
      },
    },
    {
      name: "new domain folder",
      edit: async (i) => {
        await mkdir(join(config, `domains/new${i}.test`));
        await writeFile(join(config, `domains/new${i}.test/users`), "someone\n");
        return `someone@new${i}.test`;
      },
    },
    {
      name: "ConfigMap swap",
      edit: async (i) => {
        await configMapVersion(`cm${i}.test`);
        return `anyone@cm${i}.test`;
      },
    },
  ];

  const all: number[] = [];
  const rows: string[][] = [["kind of write", "edits", "median ms", "p99 ms", "max ms", "lost"]];
  for (const kind of kinds) {
    const latencies: number[] = [];
    let lost = 0;
    for (let i = 1; i <= EDITS; i++) {
      const address = await kind.edit(i);
      const saved = performance.now();
      let seen: number | undefined;
      while (performance.now() - saved < EDIT_TIMEOUT_MS) {
        if ((await smtp.rcpt(address)).startsWith("250")) {
          seen = performance.now();
          break;
        }
        await sleep(1);
      }
      if (seen === undefined) lost++;
      else latencies.push(seen - saved);
      // Let the watcher's poll pass, so the next edit starts from a quiet tree.
      await sleep(50);
    }
    all.push(...latencies);
    rows.push([kind.name, String(EDITS), ...summary(latencies), String(lost)]);
  }
  rows.push(["all kinds", String(EDITS * kinds.length), ...summary(all), ""]);
  smtp.close();
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  await rm(root, { recursive: true, force: true });

  const reloads = (stderr.match(/msg="policy reloaded"/g) ?? []).length;
  const failures = (stderr.match(/msg="policy reload failed/g) ?? []).length;
  console.log(
    `${runtime}: save -> first SMTP transaction that sees it (goal: p99 <= 250 ms); ` +
      `${reloads} reloads, ${failures} failed`,
  );
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) {
    console.log(
      "  " +
        row.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join(
          "  ",
        ),
    );
  }
}

function summary(values: number[]): string[] {
  if (values.length === 0) return ["-", "-", "-"];
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return [at(0.5).toFixed(1), at(0.99).toFixed(1), sorted[sorted.length - 1]!.toFixed(1)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One SMTP connection that asks, transaction by transaction, whether RCPT is accepted. */
class SmtpProbe {
  #socket: Socket;
  #buffer = "";
  #waiting: Array<(line: string) => void> = [];
  #lines: string[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk) => {
      this.#buffer += chunk.toString("latin1");
      let nl;
      while ((nl = this.#buffer.indexOf("\r\n")) >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 2);
        if (/^\d{3}-/.test(line)) continue;
        const waiter = this.#waiting.shift();
        if (waiter) waiter(line);
        else this.#lines.push(line);
      }
    });
  }

  static async open(port: number): Promise<SmtpProbe> {
    const socket = connect(port, "127.0.0.1");
    await new Promise((r, j) => socket.once("connect", r).once("error", j));
    const probe = new SmtpProbe(socket);
    await probe.#read();
    socket.write("EHLO probe.test\r\n");
    await probe.#read();
    return probe;
  }

  /** The next reply line; rejects when the server closes the session (a probe never waits for good). */
  #read(): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.#socket.destroyed || this.#socket.readableEnded) {
      return Promise.reject(new Error("the server closed the probe's session"));
    }
    return new Promise((resolve, reject) => {
      const onClose = () => reject(new Error("the server closed the probe's session"));
      this.#socket.once("close", onClose);
      this.#waiting.push((line) => {
        this.#socket.off("close", onClose);
        resolve(line);
      });
    });
  }

  /** The reply to RCPT TO in a new transaction. */
  async rcpt(address: string): Promise<string> {
    this.#socket.write(`RSET\r\nMAIL FROM:<probe@client.test>\r\nRCPT TO:<${address}>\r\n`);
    await this.#read();
    await this.#read();
    return await this.#read();
  }

  close(): void {
    this.#socket.destroy();
  }
}

await main();
