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
import { HOOK_POINTS, type HookPoint } from "../../hooks/mod.ts";
import type { Logger } from "../log/mod.ts";
import {
  fingerprint,
  MAX_ENTRIES,
  SKIPPED,
  type TreeWatch,
  TRUNCATED,
  watchTree,
} from "../policy/watcher.ts";

/**
 * How deep a hook's folder is watched. All of it is the hook's code,
 * readable to it and importable at any depth; the configuration's watch
 * stops at four levels, a hook's goes as deep as this. Like the
 * configuration's, it skips `.git` and `node_modules`: installed packages
 * can be thousands of files, walked twice a second, and a change there
 * takes effect when the hook's own files change or at a restart. The
 * watcher's entry budget still bounds the walk (a link to a parent folder
 * loops).
 */
export const HOOK_TREE: { readonly maxDepth: number; readonly skip: ReadonlySet<string> } = {
  maxDepth: 32,
  skip: SKIPPED,
};

/**
 * Calls `onChange` when a hook's files may have changed: the hooks
 * folder's own entries (`<point>.ts`, an executable `<point>`), and each
 * hook's folder to {@linkcode HOOK_TREE}'s depth, each with an entry budget
 * of its own, so that a big folder cannot hide another hook's changes.
 */
export function watchHooks(hooksDir: string, onChange: () => void): TreeWatch {
  const watches = [
    watchTree(hooksDir, onChange, { maxDepth: 0 }),
    ...HOOK_POINTS.map((point) => watchTree(join(hooksDir, point), onChange, HOOK_TREE)),
  ];
  return {
    close() {
      for (const watch of watches) watch.close();
    },
  };
}

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
