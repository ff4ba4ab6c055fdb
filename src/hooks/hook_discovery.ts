/**
 * Finding a hook point's files in the hooks folder: a TypeScript module
 * (`<point>.ts`) or an executable (`<point>`), with a fingerprint that
 * changes whenever the hook's files do, so that the runner knows when to
 * swap in fresh workers.
 *
 * @module
 */

import { accessSync, constants } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { HookPoint } from "../../hooks/mod.ts";
import type { Logger } from "../log/mod.ts";
import { fingerprint, MAX_ENTRIES, TRUNCATED } from "../policy/watcher.ts";

/**
 * How much of the hooks folder is watched. All of a hook's folder is its
 * code, readable to it and importable at any depth, its installed packages
 * too: a change anywhere in it reloads the hook (README "Module state").
 * The configuration's watch stops at four levels and skips `node_modules`;
 * a hook's goes as deep as this, and skips only `.git`. The entry budget
 * of the watcher still bounds the walk (a link to a parent folder loops).
 */
export const HOOK_TREE: { readonly maxDepth: number; readonly skip: ReadonlySet<string> } = {
  maxDepth: 32,
  skip: new Set([".git"]),
};

/** A hook's files as found: its form, its entry path, and their fingerprint. */
export interface DiscoveredHook {
  form: "module" | "exec";
  path: string;
  /** Changes whenever the hook's files change (the runner appends its settings). */
  print: string;
}

/**
 * Looks for the hook of `point` in `hooksDir`; undefined when there is none
 * (or only an executable that is not executable). When both forms exist,
 * the module hook wins, and `logger` says so.
 */
export async function discoverHook(
  hooksDir: string,
  point: HookPoint,
  logger: Logger,
): Promise<DiscoveredHook | undefined> {
  const modulePath = join(hooksDir, `${point}.ts`);
  const execPath = join(hooksDir, point);
  const moduleInfo = await stat(modulePath).catch(() => undefined);
  const execInfo = await stat(execPath).catch(() => undefined);
  if (moduleInfo?.isFile()) {
    if (execInfo?.isFile()) {
      logger.warn("both forms of a hook exist; the module hook is used", {
        hook: point,
      });
    }
    const folder = await fingerprint(
      join(hooksDir, point),
      HOOK_TREE.maxDepth,
      undefined,
      HOOK_TREE.skip,
    );
    if (folder.endsWith(TRUNCATED)) {
      logger.warn("hook folder too big to watch whole; changes past its first entries go unseen", {
        hook: point,
        entries: MAX_ENTRIES,
      });
    }
    const print =
      `module\n${moduleInfo.size}:${moduleInfo.mtimeMs}:${moduleInfo.ino}:${moduleInfo.mode}\n` +
      folder;
    return { form: "module", path: modulePath, print };
  }
  if (execInfo?.isFile()) {
    if (!isExecutable(execPath)) {
      logger.warn("hook file is not executable; ignored", { path: execPath });
      return undefined;
    }
    return {
      form: "exec",
      path: execPath,
      print: `exec\n${execInfo.mtimeMs}:${execInfo.ino}:${execInfo.mode}`,
    };
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
