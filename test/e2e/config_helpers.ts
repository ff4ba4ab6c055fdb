/**
 * Helpers of the configuration tests: a `serve` that must not start, the
 * application log after a mark, and the SIZE a server advertises.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { connect } from "node:net";
import { eventually, posternCommand, type Server } from "./harness.ts";

/** How a `postern serve` that was expected to refuse to start ended. */
export interface ServeOutcome {
  /** Exit status; null when it was stopped (it listened). */
  code: number | null;
  stderr: string;
  /** It started listening (and was then stopped). */
  listening: boolean;
}

/**
 * Runs `postern serve` on `configDir` until it exits, or until it listens
 * (then it is stopped, and `listening` says so). `wrapper` runs it (as the
 * harness's `wrapper` option does).
 */
export function serveUntilExit(
  configDir: string,
  dataDir: string,
  wrapper: string[] = [],
): Promise<ServeOutcome> {
  const [program, ...args] = [
    ...wrapper,
    ...posternCommand([
      "serve",
      "--config",
      configDir,
      "--data",
      dataDir,
      "--listen",
      "127.0.0.1:0",
      "--admin-listen",
      "127.0.0.1:0",
    ]),
  ];
  return new Promise((resolve) => {
    const child = spawn(program!, args, { stdio: ["ignore", "pipe", "pipe"] });
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

/** The number of application log lines so far: a mark for {@linkcode untilLog}. */
export function logMark(server: Server): number {
  return server.stderr().split("\n").length - 1;
}

/** Waits for an application log line matching `match` after the first `from` lines. */
export async function untilLog(server: Server, match: RegExp, from: number): Promise<string> {
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

/** The next policy reload's log line after `from`, whether it swapped or failed. */
export function nextReload(server: Server, from: number): Promise<string> {
  return untilLog(server, /msg="policy reload(ed|\s+failed)/, from);
}

/** The SIZE a new session's EHLO advertises (undefined when none). */
export function ehloSize(server: Server): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect(server.port, server.host);
    let buffer = "";
    let greeted = false;
    socket.on("error", reject);
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      const lines = buffer.split("\r\n");
      if (!greeted && lines.some((l) => /^220 /.test(l))) {
        greeted = true;
        buffer = "";
        socket.write("EHLO client.test\r\n");
        return;
      }
      if (greeted && lines.some((l) => /^250 /.test(l))) {
        socket.end("QUIT\r\n");
        socket.destroy();
        const size = lines.map((l) => /^250[- ]SIZE (\d+)/.exec(l)?.[1]).find((s) => s);
        resolve(size === undefined ? undefined : Number(size));
      }
    });
  });
}
