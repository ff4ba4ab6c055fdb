/**
 * Child processes with the message streamed to standard input, used by pipe
 * aliases (and later by executable hooks).
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";
import { concatBytes } from "../bytes.ts";
import { sealDescriptors } from "./descriptors.ts";

/** Options for {@linkcode spawnProcess}. */
export interface SpawnOptions {
  /** Program and arguments; no shell is involved. */
  argv: readonly string[];
  /** The complete environment of the child; nothing is inherited. */
  env: Record<string, string>;
  /** Working directory of the child. */
  cwd?: string;
  /** Chunks written to the child's standard input, then closed. */
  stdin: AsyncIterable<Uint8Array>;
  /** Kills the child (SIGKILL) after this many milliseconds. */
  timeoutMs: number;
  /** At most this many bytes of stdout and of stderr are kept. */
  maxOutputBytes?: number;
}

/** What a finished child process left behind. */
export interface SpawnResult {
  /** Exit status, or null when the child was killed by a signal. */
  exitCode: number | null;
  /** True when the child was killed because it ran past its timeout. */
  timedOut: boolean;
  /** Standard output, cut at `maxOutputBytes`. */
  stdout: string;
  /** Standard error, cut at `maxOutputBytes`. */
  stderr: string;
}

/**
 * Runs a program with its input streamed from `stdin`, and resolves when it
 * exits. A program that cannot be started resolves with exit code 127, as a
 * shell would report, rather than throwing.
 */
export function spawnProcess(options: SpawnOptions): Promise<SpawnResult> {
  const limit = options.maxOutputBytes ?? 64 * 1024;
  const [program, ...programArgs] = options.argv;
  if (program === undefined) {
    return Promise.resolve({
      exitCode: 127,
      timedOut: false,
      stdout: "",
      stderr: "empty command",
    });
  }
  return new Promise((resolve) => {
    // In its own process group, so that a timeout ends the program and
    // everything it started (a shell script's `sleep` would otherwise keep
    // the pipes open, and the caller waiting, long after the kill).
    // The child gets its three pipes and nothing else of Postern's.
    sealDescriptors();
    const child = spawn(program, programArgs, {
      env: options.env,
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    const stdout = new Collected(limit);
    const stderr = new Collected(limit);
    let timedOut = false;
    let settled = false;
    child.stdout.on("data", (chunk: Uint8Array) => stdout.add(chunk));
    child.stderr.on("data", (chunk: Uint8Array) => stderr.add(chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, options.timeoutMs);
    const finish = (exitCode: number | null, extraError = "") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ exitCode, timedOut, stdout: stdout.text(), stderr: stderr.text() + extraError });
    };
    child.on("error", (err) => finish(127, String(err.message)));
    child.on("close", (code) => finish(code));
    // A descendant that left the group may still hold the pipes: once the
    // program itself has exited, do not wait for them for long.
    child.on("exit", (code) => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code);
      }, 1000).unref?.();
    });
    // A child that exits without reading its input makes writes fail with
    // EPIPE; that is the child's choice and its exit status tells the outcome.
    child.stdin.on("error", () => {});
    (async () => {
      try {
        for await (const chunk of options.stdin) {
          if (!child.stdin.write(chunk)) {
            await new Promise<void>((r) => {
              const done = () => {
                child.stdin.off("drain", done);
                child.off("close", done);
                r();
              };
              child.stdin.on("drain", done);
              child.on("close", done);
            });
          }
          if (settled) break;
        }
      } catch {
        // The child went away; its exit status is what matters.
      } finally {
        child.stdin.end();
      }
    })();
  });
}

/**
 * The first `limit` bytes of an output stream. They are decoded once, at
 * the end: a UTF-8 character that the pipe delivers in two chunks would
 * become two U+FFFD if each chunk were decoded on its own.
 */
class Collected {
  #chunks: Uint8Array[] = [];
  #kept = 0;
  #cut = false;
  #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Keeps what fits of `chunk`. */
  add(chunk: Uint8Array): void {
    const room = this.#limit - this.#kept;
    if (chunk.byteLength > room) this.#cut = true;
    if (room <= 0) return;
    const part = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    this.#chunks.push(part);
    this.#kept += part.byteLength;
  }

  /** The kept bytes as text; a character cut by the limit is left out. */
  text(): string {
    // `stream: true` holds back an incomplete character at the end instead
    // of turning it into U+FFFD: after a cut, that is the cut's doing.
    return new TextDecoder().decode(concatBytes(this.#chunks, this.#kept), { stream: this.#cut });
  }
}
