/**
 * The only module that touches the host runtime (Deno, Bun or Node's
 * `process`). Everything else in Postern uses Web APIs, `node:` built-ins
 * that both runtimes provide, and this small interface, which keeps the same
 * source runnable on `deno run`, `bun run` and in a compiled binary.
 *
 * @module
 */

import process from "node:process";
import { hostname as osHostname } from "node:os";
import { GcHint } from "./gc_hint.ts";
import { IdleTrim } from "./idle_trim.ts";

export { spawnProcess } from "./spawn.ts";
export type { SpawnOptions, SpawnResult } from "./spawn.ts";
export { startChild } from "./child.ts";
export { embeddedFile } from "./embedded.ts";
export type { EmbeddedFile } from "./embedded.ts";
export { sealDescriptors } from "./descriptors.ts";
export type { SealResult } from "./descriptors.ts";
export { netServerStopsAfterAcceptError, openDescriptorCount, openFileLimit } from "./limits.ts";
export type { Child, ChildExit, ChildOptions } from "./child.ts";

/** The name of the JavaScript runtime Postern is running on. */
export type RuntimeName = "deno" | "bun" | "node";

/** Signals Postern reacts to. */
export type SignalName = "SIGTERM" | "SIGINT" | "SIGHUP";

const globals = globalThis as Record<string, unknown>;

/** The runtime Postern is running on, detected once. */
export const runtimeName: RuntimeName = "Deno" in globals
  ? "deno"
  : "Bun" in globals
  ? "bun"
  : "node";

/** The version of the runtime, such as `2.9.6`. */
export const runtimeVersion: string = runtimeName === "deno"
  ? String(process.versions["deno"] ?? process.version)
  : runtimeName === "bun"
  ? String(process.versions["bun"] ?? process.version)
  : process.version;

/**
 * The buffer size for streaming a spooled message out of its file. Every
 * chunk is a new ArrayBuffer, which each engine counts as memory outside
 * its heap, and the two GCs answer that count in opposite ways:
 *
 * - V8 (Deno) starts a full mark-compact once enough of it is allocated:
 *   with 256 KiB per read, 19-29 of them per 3000 small messages at
 *   c=20, and 0.19-0.24 ms of CPU per message on its GC threads; with 64
 *   KiB, 1-6 and 0.05-0.08 ms; the server's CPU per message fell by 9 %
 *   (median of 6 alternated rounds). 16 KiB saved nothing more.
 * - JavaScriptCore (Bun) collects sooner the more of it there is: with 64
 *   KiB, or a buffer the size of the file, the binary stayed at 200-230
 *   MB resident after 3 x 3000 messages at c=20, against 105-121 MB with
 *   256 KiB.
 */
export const messageReadBytes: number = runtimeName === "bun" ? 256 * 1024 : 64 * 1024;

/** Command-line arguments after the program (and script) name. */
export function args(): string[] {
  return process.argv.slice(2);
}

/** Reads an environment variable; undefined when unset or not permitted. */
export function env(name: string): string | undefined {
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

/** Ends the process with the exit status. Only `src/main.ts` calls this. */
export function exit(code: number): never {
  process.exit(code);
}

/**
 * Calls `handler` when the process is about to exit, however it exits
 * (`exit`, the end of the event loop, an uncaught error); it must finish
 * synchronously.
 */
export function onExit(handler: () => void): void {
  process.on("exit", handler);
  // Deno ends on an uncaught error or rejection without the "exit" event;
  // its error events come first. Listened to, not prevented: the process
  // still ends as it would have.
  if ("Deno" in globalThis) {
    globalThis.addEventListener("error", handler);
    globalThis.addEventListener("unhandledrejection", handler);
  }
}

/** Path of the running runtime's executable (or of the compiled binary). */
export function execPath(): string {
  return process.execPath;
}

/** The process ID. */
export const pid: number = process.pid;

/** The host's name, used as the default SMTP hostname. */
export function hostname(): string {
  return osHostname();
}

/** Calls `handler` whenever `signal` arrives; returns a function to stop. */
export function onSignal(signal: SignalName, handler: () => void): () => void {
  process.on(signal, handler);
  return () => {
    process.off(signal, handler);
  };
}

/** Writes text to standard output without a trailing newline. */
export function writeStdout(text: string): void {
  process.stdout.write(text);
}

/** Writes text to standard error without a trailing newline. */
export function writeStderr(text: string): void {
  process.stderr.write(text);
}

/** Resident memory and CPU time used by this process so far. */
export interface ResourceUsage {
  /** Resident set size in bytes. */
  rssBytes: number;
  /** User plus system CPU time in microseconds. */
  cpuMicros: number;
}

/** Returns this process's resident memory and CPU time. */
export function resourceUsage(): ResourceUsage {
  const cpu = process.cpuUsage();
  return {
    rssBytes: process.memoryUsage().rss,
    cpuMicros: cpu.user + cpu.system,
  };
}
/** How often, at most, Bun's collector is nudged while mail flows (see gc_hint.ts). */
const GC_HINT_MS = 50;

/** How long without mail before memory is given back (see idle_trim.ts). */
const IDLE_TRIM_MS = 600_000;

interface BunMemory {
  gc(force: boolean): void;
  shrink(): void;
}

const idleTrim = runtimeName === "bun"
  ? new IdleTrim(() => {
    const bun = globals["Bun"] as BunMemory;
    bun.gc(true);
    bun.shrink();
  }, IDLE_TRIM_MS)
  : undefined;

const gcHint = runtimeName === "bun"
  ? new GcHint(() => (globals["Bun"] as BunMemory).gc(false), GC_HINT_MS)
  : undefined;

/**
 * Notes that a message was taken in; on Bun, the garbage collector is asked
 * to run soon (see gc_hint.ts), and memory is given back after a quiet
 * spell (idle_trim.ts). Does nothing on Deno, whose V8 collects on its own
 * budget and when idle.
 */
export function noteMessageWork(): void {
  gcHint?.note();
  idleTrim?.note();
}

export { readSecret } from "./secret.ts";
export { formatHostPort, listenTcp } from "./tcp.ts";
export type { TcpConn, TcpListener } from "./tcp.ts";
export { listenTls } from "./tls.ts";
export type { TlsCertificate, TlsListener } from "./tls.ts";
