/**
 * Long-lived child processes with pipes on the three standard streams and
 * on descriptor 3, used by hook workers: requests go to standard input,
 * answers come back on descriptor 3, so nothing the child prints on
 * standard output or error can be mistaken for an answer. (`spawn.ts` runs
 * a program once to completion.)
 *
 * A child and everything it starts end with it, and with Postern:
 * - It runs in a process group of its own (as `spawn.ts` runs a program),
 *   and ending it ends the group: a program a hook started under
 *   `allow.run` does not outlive the worker that a timeout ended.
 * - Postern may die without ending it (SIGKILL, the OOM killer, a crash),
 *   and the child's own code may never yield (a hook busy in a loop) or
 *   refuse to exit (a hook that replaced `Deno.exit`). So the child is
 *   started through `/bin/sh`, which forks a watcher into the group and
 *   then becomes the program (same pid): the watcher blocks reading one
 *   more pipe from Postern (descriptor 4, which the program does not get)
 *   and kills the group when that read ends, which is when Postern's end
 *   closes: Postern exited, however it did, or the child exited and
 *   Postern closed it. The kernel closes a dead process's descriptors, so
 *   this needs no cooperation from the child, costs nothing per call (one
 *   idle `sh`, about 0.1 MiB, per child) and is the same under Deno and
 *   Bun. Why not PR_SET_PDEATHSIG (`setpriv --pdeathsig`): it is sent when
 *   the *thread* that spawned the child ends, which need not be the
 *   process, it reaches only the direct child (not what a hook started),
 *   and `setpriv` is not installed everywhere; `/bin/sh` already is a
 *   requirement of the worker's data limit.
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";
import { killDescendants } from "./descendants.ts";
import { sealDescriptors } from "./descriptors.ts";

/**
 * The watcher (see the module's notes). `$0`'s arguments are the program:
 * the watcher gets no descriptor of the program's but descriptor 4, the
 * program gets every one but descriptor 4.
 */
const WATCHER = "{ read -r line <&4; kill -s KILL 0; } </dev/null >/dev/null 2>&1 3>&- & " +
  'exec 4<&-; exec "$@"';

/** The argv that starts `argv` with the watcher in front, on a system with `/bin/sh`. */
export function watchedArgv(argv: readonly string[], platform: string): string[] {
  if (platform === "win32") return [...argv];
  return ["/bin/sh", "-c", WATCHER, "sh", ...argv];
}

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
  /**
   * Ends the child and every process of its group (what it started) with
   * SIGKILL; harmless when it already exited.
   */
  kill(): void;
}

/** How a child ended. */
export interface ChildExit {
  code: number | null;
  signal: string | null;
  /** Why it could not be started, when it could not. */
  error?: string;
}

/**
 * Starts a child process in a process group of its own, which ends when
 * Postern does (see the module's notes). Never throws; a failed start is
 * reported through `onExit`.
 */
export function startChild(options: ChildOptions): Child {
  const [program, ...programArgs] = watchedArgv(options.argv, process.platform);
  // The child gets its pipes and nothing else of Postern's.
  sealDescriptors();
  const child = spawn(program ?? "", programArgs, {
    env: options.env,
    cwd: options.cwd,
    // 0-3: the protocol; 4: the watcher's (never written).
    stdio: ["pipe", "pipe", "pipe", "pipe", "pipe"],
    // A new session, so a group of its own (setsid).
    detached: true,
  });
  const channel = child.stdio[3] as unknown as NodeJS.ReadableStream | null;
  const lifeline = child.stdio[4] as unknown as { destroy(): void } | null;
  let exited: ChildExit | undefined;
  const exitHandlers: Array<(exit: ChildExit) => void> = [];
  const finish = (exit: ChildExit) => {
    if (exited) return;
    exited = exit;
    // The watcher, still waiting, ends what the child left running in its
    // group (a program a hook started), and then itself.
    lifeline?.destroy();
    for (const handler of exitHandlers) handler(exit);
  };
  child.on("error", (err) => finish({ code: null, signal: null, error: err.message }));
  child.on("exit", (code, signal) => finish({ code, signal }));
  // Writes to a child that died fail with EPIPE; the exit handler reports it.
  child.stdin.on("error", () => {});
  (lifeline as unknown as NodeJS.EventEmitter | null)?.on("error", () => {});
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
      if (exited) return;
      try {
        if (child.pid !== undefined) {
          // What the child started in a session of its own left the group;
          // found by ancestry while the child still lives, before the group
          // (the child among it) goes and they are handed to init.
          // The child is stopped first, so that it starts nothing more.
          process.kill(child.pid, "SIGSTOP");
          killDescendants(child.pid, (pid, signal) => process.kill(pid, signal));
          // The group: the child, its watcher and whatever it started.
          process.kill(-child.pid, "SIGKILL");
        } else {
          child.kill("SIGKILL");
        }
      } catch {
        child.kill("SIGKILL");
      }
    },
  };
}
