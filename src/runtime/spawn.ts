/**
 * Child processes with the message streamed to standard input, used by pipe
 * aliases, executable hooks and `postern check`.
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
  /** At most this many bytes of stdout and of stderr are kept; default 64 KiB. */
  maxOutputBytes?: number;
  /**
   * What happens when stdout passes `maxOutputBytes`: `"cut"` (the default)
   * keeps its beginning and reads on to the end, unkept; `"kill"` kills the
   * child and its process group at once, for a caller that must not act on
   * part of an answer and need not wait for the rest.
   */
  onStdoutExcess?: "cut" | "kill";
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
  /**
   * Set when stdout passed `maxOutputBytes`, so that `stdout` is only its
   * beginning: the bytes read of it (with `"kill"`, up to the kill).
   */
  stdoutOverflow?: number;
  /** Set when stderr passed `maxOutputBytes`: the bytes read of it. */
  stderrOverflow?: number;
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
    let killed = false;
    const killGroup = () => {
      if (killed) return;
      killed = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    };
    child.stdout.on("data", (chunk: Uint8Array) => {
      stdout.add(chunk);
      if (stdout.overflowed && options.onStdoutExcess === "kill") killGroup();
    });
    child.stderr.on("data", (chunk: Uint8Array) => stderr.add(chunk));
    const timer = setTimeout(() => {
      if (killed) return;
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    const finish = (exitCode: number | null, extraError = "") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        exitCode,
        timedOut,
        stdout: stdout.text(),
        stderr: stderr.text() + extraError,
        ...(stdout.overflowed ? { stdoutOverflow: stdout.read } : {}),
        ...(stderr.overflowed ? { stderrOverflow: stderr.read } : {}),
      });
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
 * The first `limit` bytes of an output stream, and a count of all of it:
 * memory stays bounded however much a child writes. The bytes are decoded
 * once, at the end: a UTF-8 character that the pipe delivers in two chunks
 * would become two U+FFFD if each chunk were decoded on its own.
 */
class Collected {
  /** Bytes read, kept or not. */
  read = 0;
  #chunks: Uint8Array[] = [];
  #kept = 0;
  #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** True once more than the limit was read. */
  get overflowed(): boolean {
    return this.read > this.#limit;
  }

  /** Counts `chunk` and keeps what fits of it. */
  add(chunk: Uint8Array): void {
    this.read += chunk.byteLength;
    const room = this.#limit - this.#kept;
    if (room <= 0) return;
    const part = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    this.#chunks.push(part);
    this.#kept += part.byteLength;
  }

  /** The kept bytes as text; a character cut by the limit is left out. */
  text(): string {
    // `stream: true` holds back an incomplete character at the end instead
    // of turning it into U+FFFD: after a cut, that is the cut's doing.
    return new TextDecoder().decode(concatBytes(this.#chunks, this.#kept), {
      stream: this.overflowed,
    });
  }
}
