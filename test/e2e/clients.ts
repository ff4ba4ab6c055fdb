/**
 * The clients of the end-to-end tests: commands run to completion (swaks
 * among them), a raw SMTP session, submission, and readers of what they
 * print and of the Maildirs they fill. `harness.ts` re-exports them.
 *
 * @module
 */

import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Server } from "./harness.ts";

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Output and status of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion. */
export function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((res) => {
    const child = execFile(
      cmd,
      args,
      { cwd: ROOT, maxBuffer: 64 * 1024 * 1024, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        res({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Runs swaks against the server; `--server` is added. */
export function swaks(server: Server, args: string[]): Promise<RunResult> {
  return run("swaks", ["--server", `${server.host}:${server.port}`, "--timeout", "20", ...args]);
}

/** A user's login on a submission listener. */
export interface Login {
  user: string;
  password: string;
}

/**
 * Submits a message with swaks to a submission listener on 127.0.0.1:
 * STARTTLS (or implicit TLS), then AUTH PLAIN as `login`; `extra` adds
 * swaks arguments (headers, body, data).
 */
export function submitMail(
  port: number,
  login: Login,
  from: string,
  to: string[],
  extra: string[] = [],
  tls: "starttls" | "implicit" = "starttls",
): Promise<RunResult> {
  return run("swaks", [
    "--server",
    `127.0.0.1:${port}`,
    "--timeout",
    "20",
    tls === "implicit" ? "--tlsc" : "--tls",
    "--auth",
    "PLAIN",
    "--auth-user",
    login.user,
    "--auth-password",
    login.password,
    "--from",
    from,
    "--to",
    to.join(","),
    ...extra,
  ]);
}

/** The queue ID of a "250 2.0.0 Ok: queued as" reply; throws when there is none. */
export function queuedId(result: RunResult): string {
  const id = /250 2\.0\.0 Ok: queued as (\w+)/.exec(result.stdout)?.[1];
  if (id === undefined) {
    throw new Error(`not queued (exit ${result.code}):\n${result.stdout}${result.stderr}`);
  }
  return id;
}

/**
 * The `postern.yaml` lines outbound tests share: a submission listener,
 * the loopback DNS server, quick retries. An `outbound:` section follows.
 */
export function outboundBaseYaml(submission: number, dnsAddress: string): string[] {
  return [
    "hostname: mail.example.test",
    "submission:",
    `  listen: ["127.0.0.1:${submission}"]`,
    "dns:",
    `  servers: ["${dnsAddress}"]`,
    "  timeout: 2s",
    "delivery:",
    "  retry_initial: 1s",
    "  retry_max: 2s",
  ];
}

/** Server replies (`<-`, `<~`, `<**` lines) in swaks output, without the arrows. */
export function replies(output: string): string[] {
  return output.split("\n").filter((l) => /^<(-|~|\*\*|~\*|~\*\*) /.test(l)).map((l) =>
    l.replace(/^<\S*\s+/, "")
  );
}

/** Every file in a Maildir's new/ folder, oldest name first. */
export async function maildirMessages(
  dataDir: string,
  domain: string,
  user: string,
): Promise<string[]> {
  const dir = join(dataDir, "mail", domain, user, "new");
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    return [];
  }
  return await Promise.all(names.map((n) => readFile(join(dir, n), "utf8")));
}

/** Polls `check` every 50 ms until it returns a value, or throws on timeout. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Opens a raw TCP connection and reads the greeting line. */
export async function rawSession(server: Server): Promise<{
  socket: Socket;
  read: () => Promise<string>;
  send: (line: string) => Promise<string>;
  close: () => void;
}> {
  const socket = connect(server.port, server.host);
  let buffer = "";
  const pending: Array<(line: string) => void> = [];
  const lines: string[] = [];
  socket.on("data", (chunk) => {
    buffer += chunk.toString("latin1");
    let nl;
    while ((nl = buffer.indexOf("\r\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 2);
      // Multi-line replies are delivered as their last line.
      if (/^\d{3}-/.test(line)) continue;
      const waiter = pending.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  socket.on("close", () => {
    for (const waiter of pending.splice(0)) waiter("(closed)");
  });
  socket.on("error", () => {});
  await new Promise<void>((res, rej) => {
    socket.once("connect", () => res());
    socket.once("error", rej);
  });
  const read = () =>
    new Promise<string>((res) => {
      const line = lines.shift();
      if (line !== undefined) res(line);
      else if (socket.destroyed) res("(closed)");
      else pending.push(res);
    });
  return {
    socket,
    read,
    send: (line: string) => {
      socket.write(line + "\r\n");
      return read();
    },
    close: () => socket.destroy(),
  };
}
