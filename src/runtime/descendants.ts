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

/** The parent of `pid` from `/proc/PID/stat`, or undefined when it is gone. */
function parentOf(pid: string): number | undefined {
  try {
    // The command name may hold spaces and parentheses: the fields after
    // the last ")" are the state, then the parent's PID.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** Every live process below `pid` (children, their children, …); [] off Linux. */
export function descendantsOf(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = parentOf(entry);
    if (parent === undefined) continue;
    const list = children.get(parent);
    if (list) list.push(Number(entry));
    else children.set(parent, [Number(entry)]);
  }
  const found: number[] = [];
  const todo = [...(children.get(pid) ?? [])];
  while (todo.length > 0) {
    const next = todo.pop()!;
    found.push(next);
    todo.push(...(children.get(next) ?? []));
  }
  return found;
}

/**
 * Ends `pid`'s descendants with SIGKILL. Each is first stopped (SIGSTOP),
 * parents before children, and the tree looked at again, a few times at
 * most, so that none can start another meanwhile; a stopped process cannot
 * collect its children either, so no PID here is reused before its kill.
 */
export function killDescendants(pid: number, kill: (pid: number, signal: string) => void): void {
  const seen = new Set<number>();
  for (let round = 0; round < 4; round++) {
    const fresh = descendantsOf(pid).filter((p) => !seen.has(p));
    if (fresh.length === 0) break;
    for (const p of fresh) {
      seen.add(p);
      tryKill(kill, p, "SIGSTOP");
    }
  }
  for (const p of seen) tryKill(kill, p, "SIGKILL");
}

function tryKill(kill: (pid: number, signal: string) => void, pid: number, signal: string): void {
  try {
    kill(pid, signal);
  } catch {
    // Gone meanwhile.
  }
}
