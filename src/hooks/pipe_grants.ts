/**
 * What a module hook's answer may make Postern run. An alias-resolve answer
 * `| program args` names a program that Postern would run, as its own user
 * and outside any sandbox: a grant in disguise. It is honoured only when
 * the program is one the hook could run itself, that is one its
 * `allow.run` grants, resolved the way deno resolves that list:
 *
 * - an absolute entry is that path;
 * - an entry with a slash is relative to the hook's working directory (the
 *   configuration directory);
 * - a bare name is looked up in the `PATH` the worker gets (Postern's own).
 *
 * The program of a pipe target is its first word. An absolute path must be
 * one of the granted paths exactly; a bare name is looked up in the same
 * `PATH`; a relative path with a slash is refused (it would be resolved
 * against the pipe's working directory, which no grant speaks of). The
 * target then runs the path that was checked, so a different `PATH` at
 * delivery cannot swap the program.
 *
 * @module
 */

import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";

/** Where the programs of a hook's `allow.run` are looked up. */
export interface RunGrants {
  /** The hook's `allow.run` entries, as configured. */
  run: readonly string[];
  /** The `PATH` of the hook's workers (Postern's own), if any. */
  path: string | undefined;
  /** The working directory of the hook's workers (the configuration directory). */
  cwd: string;
}

/** The absolute paths of the programs that `grants.run` lets a hook run. */
export function grantedPrograms(grants: RunGrants): Set<string> {
  const programs = new Set<string>();
  for (const entry of grants.run) {
    if (isAbsolute(entry)) programs.add(entry);
    else if (entry.includes("/")) programs.add(resolve(grants.cwd, entry));
    else {
      const found = lookUp(entry, grants.path);
      if (found !== undefined) programs.add(found);
    }
  }
  return programs;
}

/**
 * The absolute path that pipe program `program` (a target's first word)
 * runs, when `granted` holds it; undefined when the hook may not run it.
 */
export function grantedProgram(
  program: string,
  granted: ReadonlySet<string>,
  path: string | undefined,
): string | undefined {
  const absolute = isAbsolute(program)
    ? program
    : program.includes("/") || program === ""
    ? undefined
    : lookUp(program, path);
  return absolute !== undefined && granted.has(absolute) ? absolute : undefined;
}

/**
 * The first executable file named `name` in the directories of `path`,
 * as a shell (and deno) finds it. Empty entries (the current directory)
 * are skipped.
 */
export function lookUp(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? "").split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not there, or not executable: keep looking.
    }
  }
  return undefined;
}
