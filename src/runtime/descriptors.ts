/**
 * Keeps Postern's descriptors out of the programs it starts (hook workers,
 * executable hooks, pipe aliases): a child must hold only the descriptors
 * of its own protocol, whatever Postern was started with.
 *
 * A child inherits every descriptor of its parent that lacks close-on-exec,
 * and Postern may have inherited such descriptors itself (a service
 * manager's socket, a shell's redirection, a pipe of the process that
 * started it). What each runtime does about them:
 * - Bun closes every descriptor above the child's stdio when it spawns
 *   (seen: a child of `node:child_process` under Bun, and under the compiled
 *   binary, holds only its stdio), so nothing is needed there.
 * - Deno's `node:child_process` and `Deno.Command` (Rust's
 *   `std::process::Command`) close nothing: a child holds every inherited
 *   descriptor. Deno cannot close a raw descriptor either (`node:fs`
 *   `closeSync(47)` fails with EBADF: its descriptors are resource IDs). So
 *   under Deno, before each spawn, every descriptor above 2 that lacks
 *   close-on-exec is marked close-on-exec with `fcntl(2)` through FFI.
 *   Marking rather than closing leaves the descriptor usable by Postern.
 *
 * Descriptors are listed from `/proc/self/fd` (Linux) or `/dev/fd`.
 *
 * @module
 */

import { readdirSync } from "node:fs";

/** What {@linkcode sealDescriptors} did. */
export interface SealResult {
  /** Descriptors marked close-on-exec by this call. */
  marked: number[];
  /** Why descriptors could not be checked, when they could not. */
  error?: string;
}

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

type Fcntl = (fd: number, command: number, argument: number) => number;

interface DenoFfi {
  build: { os: string };
  dlopen(
    path: string,
    symbols: Record<string, { parameters: string[]; result: string }>,
  ): { symbols: { fcntl: Fcntl } };
}

let fcntl: Fcntl | undefined;
let loadError: string | undefined;

/** fcntl(2) from the C library, through Deno's FFI; undefined with the reason when it is not available. */
function libcFcntl(deno: DenoFfi): Fcntl | undefined {
  if (fcntl || loadError) return fcntl;
  const names = deno.build.os === "darwin" ? ["libSystem.B.dylib"] : ["libc.so.6", "libc.so"];
  const errors: string[] = [];
  for (const name of names) {
    try {
      const lib = deno.dlopen(name, {
        fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
      });
      fcntl = lib.symbols.fcntl;
      return fcntl;
    } catch (err) {
      errors.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  loadError = `cannot load fcntl (${errors.join("; ")})`;
  return undefined;
}

/**
 * Open descriptors of this process above standard error (the listing's own
 * among them); undefined when they cannot be listed.
 */
export function openDescriptors(): number[] | undefined {
  for (const dir of ["/proc/self/fd", "/dev/fd"]) {
    try {
      return readdirSync(dir).map(Number).filter((fd) => Number.isInteger(fd) && fd > 2);
    } catch {
      // Try the next place.
    }
  }
  return undefined;
}

/**
 * Makes sure no descriptor of this process above 2 reaches a child: under
 * Deno, marks those without close-on-exec; elsewhere (Bun closes them when
 * it spawns) does nothing. Called before every spawn. Never throws.
 */
export function sealDescriptors(): SealResult {
  const deno = (globalThis as unknown as { Deno?: DenoFfi }).Deno;
  if (deno === undefined) return { marked: [] };
  const call = libcFcntl(deno);
  if (call === undefined) return { marked: [], error: loadError ?? "fcntl is not available" };
  const marked: number[] = [];
  for (const fd of openDescriptors() ?? []) {
    const flags = call(fd, F_GETFD, 0);
    // -1: closed meanwhile (the listing's own descriptor, for one).
    if (flags === -1 || (flags & FD_CLOEXEC) !== 0) continue;
    if (call(fd, F_SETFD, flags | FD_CLOEXEC) !== -1) marked.push(fd);
  }
  return { marked };
}
