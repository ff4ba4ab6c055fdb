/**
 * Notices changes in a directory tree however they are made: an in-place
 * write, write-to-temp-and-rename, delete and recreate, a new folder, or a
 * symlink swap as a Kubernetes ConfigMap does. File system events (where
 * the runtime delivers them) make it fast; a periodic comparison of a stat
 * fingerprint of the tree makes it certain, also where events are missing
 * (network file systems, some containers). Following symlinks when
 * statting is what catches ConfigMap swaps: the link stays, its target
 * changes.
 *
 * @module
 */

import { type FSWatcher, readdirSync, statSync, watch } from "node:fs";
import { join } from "node:path";

/** Options of {@linkcode watchTree}. */
export interface WatchOptions {
  /** Quiet time after an event before the tree is compared. Default: 30 ms. */
  debounceMs?: number;
  /** Interval of the fallback comparison. Default: 500 ms. */
  pollMs?: number;
  /** Deepest folder level looked at. Default: 4. */
  maxDepth?: number;
  /** Paths (absolute) whose changes are not of interest, such as a data folder inside the tree. */
  ignore?: (path: string) => boolean;
  /** Folder names never looked into. Default: {@linkcode SKIPPED}. */
  skip?: ReadonlySet<string>;
}

/** A running watch. */
export interface TreeWatch {
  /** Stops watching. */
  close(): void;
}

/**
 * Folders that are never configuration and can be huge: a repository's
 * history, a hook's installed packages. Skipped, so that they cannot use up
 * the entry budget before the files that matter are seen.
 */
export const SKIPPED: ReadonlySet<string> = new Set([".git", "node_modules"]);

/** Entries looked at per tree, so a huge folder cannot stall the server. */
export const MAX_ENTRIES = 10_000;

/** The last line of a fingerprint that stopped at {@linkcode MAX_ENTRIES}. */
export const TRUNCATED = `(stopped after ${MAX_ENTRIES} entries)`;

/** Entries statted between two yields to the event loop in {@linkcode fingerprint}. */
const ENTRIES_PER_YIELD = 100;

/**
 * Calls `onChange` after the tree under `root` changed (once per settled
 * change, not per event). `root` need not exist yet.
 */
export function watchTree(
  root: string,
  onChange: () => void,
  options: WatchOptions = {},
): TreeWatch {
  const debounceMs = options.debounceMs ?? 30;
  const pollMs = options.pollMs ?? 500;
  const maxDepth = options.maxDepth ?? 4;
  const ignore = options.ignore;
  const skip = options.skip ?? SKIPPED;
  let closed = false;
  let watcher: FSWatcher | undefined;
  let last: string | undefined;
  let debounce: ReturnType<typeof setTimeout> | undefined;
  let comparing = false;
  let again = false;

  const compare = async (settle: boolean) => {
    if (comparing) {
      again = true;
      return;
    }
    comparing = true;
    try {
      do {
        again = false;
        let current = await fingerprint(root, maxDepth, ignore, skip);
        if (closed) return;
        // A change may be a write in progress (a file truncated and not
        // yet rewritten, deleted and not yet created again): report the
        // tree only once it has stayed the same for the debounce time.
        // Events can arrive before the last write of a save, so this holds
        // after the debounce too, not only for changes the poll finds.
        for (let n = 0; settle && last !== undefined && current !== last && n < 10; n++) {
          await new Promise((resolve) => setTimeout(resolve, debounceMs));
          const later = await fingerprint(root, maxDepth, ignore, skip);
          if (closed) return;
          if (later === current) break;
          current = later;
        }
        if (last !== undefined && current !== last) {
          last = current;
          onChange();
        } else {
          last = current;
        }
      } while (again && !closed);
    } finally {
      comparing = false;
    }
  };
  const schedule = (_event?: string, filename?: string | Buffer | null) => {
    if (closed) return;
    if (ignore && typeof filename === "string" && ignore(join(root, filename))) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => void compare(true), debounceMs);
  };
  const startWatching = () => {
    if (watcher || closed) return;
    try {
      watcher = watch(root, { recursive: true, persistent: false }, schedule);
    } catch {
      try {
        watcher = watch(root, { persistent: false }, schedule);
      } catch {
        return; // Not there yet, or not watchable: polling covers it.
      }
    }
    watcher.on("error", () => {
      watcher?.close();
      watcher = undefined;
    });
  };

  void compare(false);
  startWatching();
  const poll = setInterval(() => {
    startWatching();
    void compare(true);
  }, pollMs);
  // Unref'd timers must not keep a process alive that is otherwise done.
  (poll as { unref?: () => void }).unref?.();

  return {
    close() {
      closed = true;
      clearInterval(poll);
      clearTimeout(debounce);
      watcher?.close();
    },
  };
}

/**
 * A string that changes whenever a file under `root` is added, removed,
 * replaced, written or has its mode changed: path, size, modification
 * time, change time, inode and mode of every entry, symlinks followed. The
 * change time catches a rewrite in place that keeps the size and puts the
 * modification time back (`cp --preserve`, `rsync -t`, a restore), which no
 * other field shows; no one can set it.
 *
 * The calls are synchronous: a reload takes several fingerprints, and an
 * asynchronous stat costs a hand-off to a thread pool and back, which on
 * Deno made a fingerprint of a small tree some 5 times dearer in CPU than
 * the same stats done in line (and dominated the CPU of a reload). A stat
 * of a local file takes microseconds; the walk yields to the event loop
 * every {@linkcode ENTRIES_PER_YIELD} entries so that a big tree does not
 * hold up sessions either.
 */
export async function fingerprint(
  root: string,
  maxDepth = 4,
  ignore?: (path: string) => boolean,
  skip: ReadonlySet<string> = SKIPPED,
): Promise<string> {
  const parts: string[] = [];
  let statted = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      parts.push(`${dir}:absent`);
      return;
    }
    for (const name of names) {
      if (parts.length >= MAX_ENTRIES) return;
      const path = join(dir, name);
      if (skip.has(name) || ignore?.(path)) continue;
      if (++statted % ENTRIES_PER_YIELD === 0) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      try {
        // A dangling symlink (mid-swap) is common: no error object for it.
        const info = statSync(path, { throwIfNoEntry: false });
        if (info === undefined) {
          parts.push(`${path}:dangling`);
        } else if (info.isDirectory()) {
          parts.push(`${path}/`);
          if (depth < maxDepth) await walk(path, depth + 1);
        } else {
          // The mode too: `chmod +x` changes nothing else.
          parts.push(
            `${path}:${info.size}:${info.mtimeMs}:${info.ctimeMs}:${info.ino}:${info.mode}`,
          );
        }
      } catch {
        parts.push(`${path}:dangling`);
      }
    }
  };
  await walk(root, 0);
  // Said, so that a caller can tell its user that changes past here go unseen.
  if (parts.length >= MAX_ENTRIES) parts.push(TRUNCATED);
  return parts.join("\n");
}
