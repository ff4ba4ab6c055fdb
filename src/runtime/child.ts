/**
 * Long-lived child processes with pipes on all three standard streams, used
 * by hook workers. (`spawn.ts` runs a program once to completion.)
 *
 * @module
 */

import { spawn } from "node:child_process";

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
  const child = spawn(program ?? "", programArgs, {
    env: options.env,
    cwd: options.cwd,
    stdio: ["pipe", "pipe", "pipe"],
  });
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
    onExit: (handler) => {
      if (exited) queueMicrotask(() => handler(exited!));
      else exitHandlers.push(handler);
    },
    kill: () => {
      if (!exited) child.kill("SIGKILL");
    },
  };
}
