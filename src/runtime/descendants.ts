/**
 * The processes a process started, at any depth, found through `/proc`
 * (Linux). A program a hook starts may leave the hook worker's process
 * group: a new session (`setsid`, Deno's `detached: true`) makes a group
 * of its own, which the group's SIGKILL does not reach. While the worker
 * lives, such a program is still its descendant, so it is found by its
 * ancestry and ended with the group.
 *
 * @module
 */

import { readdirSync, readFileSync } from "node:fs";

/** A process as `/proc/PID/stat` shows it: its parent and when it started. */
interface ProcStat {
  parent: number;
  /** Clock ticks after boot (field 22): with the PID, names one process for good. */
  start: string;
}

/** `/proc/PID/stat` of `pid`, or undefined when it is gone. */
function statOf(pid: string | number): ProcStat | undefined {
  try {
    // The command name may hold spaces and parentheses: the fields after
    // the last ")" start with field 3, the state; field 4 is the parent.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { parent: Number(fields[1]), start: fields[19] ?? "" };
  } catch {
    return undefined;
  }
}

/** Every live process below `pid` (children, their children, …); [] off Linux. */
export function descendantsOf(pid: number): number[] {
  return [...descendantStats(pid).keys()];
}

/** {@linkcode descendantsOf}, with each one's start time. */
function descendantStats(pid: number): Map<number, string> {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return new Map();
  }
  const children = new Map<number, number[]>();
  const starts = new Map<number, string>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = statOf(entry);
    if (stat === undefined) continue;
    starts.set(Number(entry), stat.start);
    const list = children.get(stat.parent);
    if (list) list.push(Number(entry));
    else children.set(stat.parent, [Number(entry)]);
  }
  const found = new Map<number, string>();
  const todo = [...(children.get(pid) ?? [])];
  while (todo.length > 0) {
    const next = todo.pop()!;
    found.set(next, starts.get(next) ?? "");
    todo.push(...(children.get(next) ?? []));
  }
  return found;
}

/**
 * Ends `pid`'s descendants with SIGKILL. Each is first stopped (SIGSTOP),
 * parents before children, and the tree looked at again, a few times at
 * most, so that none can start another meanwhile. A signal goes only to a
 * process that still has the start time it was found with: a PID freed
 * and reused in between names another process.
 */
export function killDescendants(pid: number, kill: (pid: number, signal: string) => void): void {
  const seen = new Map<number, string>();
  for (let round = 0; round < 4; round++) {
    const fresh = [...descendantStats(pid)].filter(([p]) => !seen.has(p));
    if (fresh.length === 0) break;
    for (const [p, start] of fresh) {
      seen.set(p, start);
      signalSame(kill, p, start, "SIGSTOP");
    }
  }
  for (const [p, start] of seen) signalSame(kill, p, start, "SIGKILL");
}

function signalSame(
  kill: (pid: number, signal: string) => void,
  pid: number,
  start: string,
  signal: string,
): void {
  if (statOf(pid)?.start !== start) return;
  try {
    kill(pid, signal);
  } catch {
    // Gone meanwhile.
  }
}
