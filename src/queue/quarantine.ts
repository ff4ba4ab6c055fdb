/**
 * Moving spool files that failed validation aside, into `corrupt/`, at
 * start-up: never over what is already there.
 *
 * @module
 */

import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { durabilityFs } from "./fs_calls.ts";

/** How many names {@linkcode moveAside} tries: `name`, then `name.1` up to `name.999`. */
export const MAX_ASIDE_NAMES = 1000;

/**
 * Moves the files `names` of `fromDir` into `toDir`, all with the same
 * suffix: none at first, else the first of `.1`, `.2`, … under which none of
 * them is taken. A rename would replace a file of the same name (an earlier
 * quarantined message, lost without a word) and fails on a directory
 * (EISDIR), so names already there are never reused. The check and the
 * rename are two calls: this runs at start-up, before anything else writes
 * into `toDir`.
 *
 * `names[0]` is the file that matters, and its failure is thrown; the others
 * (a message's state file) follow it as best they can. Returns the new path
 * of `names[0]`.
 *
 * @throws {Error} when no name is free, or what the rename of `names[0]` throws
 */
export async function moveAside(
  fromDir: string,
  toDir: string,
  names: readonly [string, ...string[]],
): Promise<string> {
  for (let n = 0; n < MAX_ASIDE_NAMES; n++) {
    const suffix = n === 0 ? "" : `.${n}`;
    if (await anyTaken(names.map((name) => join(toDir, `${name}${suffix}`)))) continue;
    const [first, ...rest] = names;
    const to = join(toDir, `${first}${suffix}`);
    await durabilityFs.rename(join(fromDir, first), to);
    for (const name of rest) {
      await durabilityFs.rename(join(fromDir, name), join(toDir, `${name}${suffix}`))
        .catch(() => {});
    }
    return to;
  }
  throw new Error(`no free name for "${names[0]}" in ${toDir}`);
}

async function anyTaken(paths: string[]): Promise<boolean> {
  for (const path of paths) {
    try {
      await lstat(path);
      return true;
    } catch (err) {
      if ((err as { code?: unknown }).code !== "ENOENT") throw err;
    }
  }
  return false;
}
