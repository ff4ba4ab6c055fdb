/**
 * The descriptor limit of this process, and what the runtime does when it
 * is reached.
 *
 * Deno and Bun both raise the soft RLIMIT_NOFILE to the hard limit when
 * they start (seen on Deno 2.9.6 and Bun 1.4.5: `ulimit -Sn 256` under a
 * hard limit of 4096 reads 4096 inside), so the soft limit read here is
 * what Postern really has. Its children inherit it.
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { openDescriptors } from "./descriptors.ts";

/**
 * Whether the runtime's `node:net` server stops accepting for good after
 * one failed accept, without an "error" event. Deno 2.9's does: its event
 * loop polls the listener with `while let Ready(Ok(..)) = poll_accept()`,
 * so an `Err` (EMFILE) ends the loop unseen, and the listener is never
 * polled again (no waker was registered). Closing it and listening again
 * on the same address brings it back. Bun's keeps accepting once
 * descriptors are free.
 */
export const netServerStopsAfterAcceptError: boolean = "Deno" in globalThis;

/**
 * The soft limit on open descriptors of this process (RLIMIT_NOFILE):
 * `Infinity` when unlimited, undefined when it cannot be read. On Linux
 * from `/proc/self/limits`; elsewhere from `ulimit -n` in a shell, which
 * inherits the limit.
 */
export function openFileLimit(): number | undefined {
  try {
    return parseProcLimits(readFileSync("/proc/self/limits", "utf8"));
  } catch {
    // Not Linux, or /proc is not mounted.
  }
  try {
    const out = execFileSync("/bin/sh", ["-c", "ulimit -n"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5_000,
    });
    return parseLimitValue(out.trim());
  } catch {
    return undefined;
  }
}

/**
 * The soft limit of "Max open files" in the text of `/proc/<pid>/limits`;
 * undefined when the line is missing or unreadable.
 */
export function parseProcLimits(text: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  if (line === undefined) return undefined;
  // "Max open files            1024                 4096                 files"
  const soft = line.slice("Max open files".length).trim().split(/\s+/)[0];
  return soft === undefined ? undefined : parseLimitValue(soft);
}

function parseLimitValue(value: string): number | undefined {
  if (value === "unlimited") return Infinity;
  return /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * How many descriptors this process holds now (standard input, output and
 * error counted as open); undefined when they cannot be listed.
 */
export function openDescriptorCount(): number | undefined {
  const above = openDescriptors();
  return above === undefined ? undefined : above.length + 3;
}
