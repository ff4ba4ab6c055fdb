/**
 * Reading a configuration that may be written at the same time. An editor
 * or a tool that writes a file in place truncates it first: a reader in
 * between sees an empty users file and would refuse every user with a
 * permanent 550. So a load counts only if the tree looks the same (size,
 * time, inode of every file) before and after it; otherwise it is read
 * again, a few times, before the change is left to the next event.
 *
 * @module
 */

import { fingerprint } from "./watcher.ts";

/** Reads attempted before giving up on a tree that keeps changing. */
const ATTEMPTS = 5;

/**
 * Wraps `load` so that it returns only what was read from an unchanged
 * tree under `root`.
 *
 * @throws {Error} when the tree changed during every attempt.
 */
export function consistentLoad<T>(
  load: () => Promise<T>,
  root: string,
  ignore?: (path: string) => boolean,
): () => Promise<T> {
  return async () => {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const before = await fingerprint(root, 4, ignore);
      const loaded = await load();
      if (await fingerprint(root, 4, ignore) === before) return loaded;
      // Someone is writing: give the write a moment to finish.
      await new Promise((resolve) => setTimeout(resolve, 10 * attempt));
    }
    throw new Error(
      `${root}: the configuration kept changing while it was read; it is read again at the ` +
        `next change`,
    );
  };
}
