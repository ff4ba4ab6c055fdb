/**
 * Runs strace on a running process and reads back its system calls, so
 * end-to-end tests can check the order of the real fsyncs and renames. Run
 * with `-f` (Deno and Bun do file I/O on pool threads) and `-y` (each
 * descriptor printed with its path, so calls are matched by path).
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";

/** One system call, with the lines of the trace where it began and ended. */
export interface Syscall {
  thread: number;
  name: string;
  /** The arguments as strace printed them (descriptors with their paths). */
  args: string;
  /** The return value as printed, such as `0` or `-1 ENOENT (…)`. */
  result: string;
  begin: number;
  end: number;
}

/** The calls traced: file syncs, renames, unlinks, opens and socket writes. */
const TRACED = [
  "openat",
  "fsync",
  "fdatasync",
  "sync_file_range",
  "rename",
  "renameat",
  "renameat2",
  "unlink",
  "unlinkat",
  "write",
  "writev",
  "pwrite64",
  "sendto",
  "sendmsg",
];

/** A strace attached to a process. */
export interface Tracer {
  /** Resolves once strace has exited (after the traced process did). */
  exited: Promise<void>;
  /** Parses the trace file; call after {@linkcode exited}. */
  calls(): Promise<Syscall[]>;
  /** Ends strace (by its own process ID) if it is still running. */
  stop(): void;
  child: ChildProcess;
}

/** Attaches strace to every thread of process `pid`; resolves once it is attached. */
export async function attachStrace(pid: number, traceFile: string): Promise<Tracer> {
  const child = spawn("strace", [
    "-f",
    "-y",
    "-s",
    "256",
    "-e",
    `trace=${TRACED.join(",")}`,
    "-o",
    traceFile,
    "-p",
    String(pid),
  ], { stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  let stderr = "";
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`strace did not attach: ${stderr}`)), 30_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      rej(new Error(`strace could not start (apt-get install strace): ${err.message}`));
    });
    child.stderr!.on("data", (chunk: Uint8Array) => {
      stderr += new TextDecoder().decode(chunk);
      if (/attached/.test(stderr)) {
        clearTimeout(timer);
        res();
      }
    });
    exited.then(() => {
      clearTimeout(timer);
      rej(new Error(`strace exited before attaching: ${stderr}`));
    });
  });
  return {
    exited,
    calls: async () => parseTrace(await readFile(traceFile, "utf8")),
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    },
    child,
  };
}

/**
 * Parses strace -f output. A call interrupted by another thread's line
 * (`<unfinished ...>`) ends at its `<... name resumed>` line.
 */
export function parseTrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const open = new Map<number, Syscall>();
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    const match = /^(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const thread = Number(match[1]);
    const rest = match[2]!;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\)\s+= (.*)$/.exec(rest);
    if (resumed) {
      const call = open.get(thread);
      if (call && call.name === resumed[1]) {
        open.delete(thread);
        call.args += resumed[2]!;
        call.result = resumed[3]!;
        call.end = index;
      }
      continue;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished) {
      const call = {
        thread,
        name: unfinished[1]!,
        args: unfinished[2]!,
        result: "",
        begin: index,
        end: -1,
      };
      open.set(thread, call);
      calls.push(call);
      continue;
    }
    const complete = /^(\w+)\((.*)\)\s+= (.*)$/.exec(rest);
    if (complete) {
      calls.push({
        thread,
        name: complete[1]!,
        args: complete[2]!,
        result: complete[3]!,
        begin: index,
        end: index,
      });
    }
  }
  return calls;
}
