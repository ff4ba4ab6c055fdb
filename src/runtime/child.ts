/**
 * Long-lived child processes with pipes on the three standard streams and
 * on descriptor 3, used by hook workers: requests go to standard input,
 * answers come back on descriptor 3, so nothing the child prints on
 * standard output or error can be mistaken for an answer. (`spawn.ts` runs
 * a program once to completion.)
 *
 * @module
 */

import { spawn } from "node:child_process";
import { sealDescriptors } from "./descriptors.ts";

/** Options for {@linkcode startChild}. */
export interface ChildOptions {
  /** Program and arguments; no shell is involved. */
  argv: readonly string[];
  /** The complete environment of the child; nothing is inherited. */
  env: Record<string, string>;
  /** Working directory of the child. */
  cwd?: string;
}

/** A running child process. */
export interface Child {
  /** Process ID, or undefined when it could not be started. */
  readonly pid: number | undefined;
  /** Writes to the child's standard input; false when the pipe is full or closed. */
  write(bytes: Uint8Array): boolean;
  /** Calls `handler` for each chunk of standard output. */
  onStdout(handler: (chunk: Uint8Array) => void): void;
  /** Calls `handler` for each chunk of standard error. */
  onStderr(handler: (chunk: Uint8Array) => void): void;
  /** Calls `handler` for each chunk the child writes to descriptor 3. */
  onChannel(handler: (chunk: Uint8Array) => void): void;
  /**
   * Calls `handler` once when the child has exited (code, or the signal
   * that ended it) or could not be started (`error` set).
   */
  onExit(handler: (exit: ChildExit) => void): void;
  /** Ends the child with SIGKILL; harmless when it already exited. */
  kill(): void;
}

/** How a child ended. */
export interface ChildExit {
  code: number | null;
  signal: string | null;
  /** Why it could not be started, when it could not. */
  error?: string;
}

/** Starts a child process. Never throws; a failed start is reported through `onExit`. */
export function startChild(options: ChildOptions): Child {
  const [program, ...programArgs] = options.argv;
  // The child gets its four pipes and nothing else of Postern's.
  sealDescriptors();
  const child = spawn(program ?? "", programArgs, {
    env: options.env,
    cwd: options.cwd,
    stdio: ["pipe", "pipe", "pipe", "pipe"],
  });
  const channel = child.stdio[3] as unknown as NodeJS.ReadableStream | null;
  let exited: ChildExit | undefined;
  const exitHandlers: Array<(exit: ChildExit) => void> = [];
  const finish = (exit: ChildExit) => {
    if (exited) return;
    exited = exit;
    for (const handler of exitHandlers) handler(exit);
  };
  child.on("error", (err) => finish({ code: null, signal: null, error: err.message }));
  child.on("exit", (code, signal) => finish({ code, signal }));
  // Writes to a child that died fail with EPIPE; the exit handler reports it.
  child.stdin.on("error", () => {});
  return {
    pid: child.pid,
    write: (bytes) => !exited && child.stdin.writable && child.stdin.write(bytes),
    onStdout: (handler) => child.stdout.on("data", (chunk: Uint8Array) => handler(chunk)),
    onStderr: (handler) => child.stderr.on("data", (chunk: Uint8Array) => handler(chunk)),
    onChannel: (handler) => channel?.on("data", (chunk) => handler(chunk as Uint8Array)),
    onExit: (handler) => {
      if (exited) queueMicrotask(() => handler(exited!));
      else exitHandlers.push(handler);
    },
    kill: () => {
      if (!exited) child.kill("SIGKILL");
    },
  };
}
