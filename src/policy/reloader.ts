/**
 * What triggers a policy reload: a change anywhere in the configuration
 * directory (however it was written), a change to a certificate kept
 * outside it (an ACME client's live folder), and SIGHUP.
 *
 * @module
 */

import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import type { Config } from "../config/mod.ts";
import type { PolicyStore } from "./store.ts";
import { type TreeWatch, watchTree } from "./watcher.ts";

/** Options of {@linkcode startReloader}. */
export interface ReloaderOptions {
  store: PolicyStore;
  /** Subscribes to SIGHUP; returns the unsubscribe function. */
  onHangup?: (handler: () => void) => () => void;
  /** Quiet time after a file event before reloading. Default: 30 ms. */
  debounceMs?: number;
  /** Interval of the fallback comparison. Default: 500 ms. */
  pollMs?: number;
}

/** Folders watched at most, whatever a broken policy names. */
const MAX_FOLDERS = 64;

/** A running reloader. */
export interface Reloader {
  /** Stops watching and listening for SIGHUP. */
  close(): void;
}

/**
 * Watches what the policy in force was read from, and reloads the store
 * when any of it changes. The set of watched folders follows the policy:
 * a certificate path added by a reload is watched from then on.
 */
export function startReloader(options: ReloaderOptions): Reloader {
  const { store } = options;
  const watches = new Map<string, TreeWatch>();
  const reload = () => void store.reload("watch");

  const follow = (config: Config) => {
    const wanted = watchedFolders(config);
    for (const [folder, watch] of watches) {
      if (!wanted.has(folder)) {
        watch.close();
        watches.delete(folder);
      }
    }
    for (const [folder, depth] of wanted) {
      if (watches.has(folder)) continue;
      const dataDir = config.dataDir;
      watches.set(
        folder,
        watchTree(folder, reload, {
          debounceMs: options.debounceMs ?? 30,
          pollMs: options.pollMs ?? 500,
          maxDepth: depth,
          // A data folder inside the configuration changes with every
          // message; it is not configuration.
          ignore: (path) => isWithin(path, dataDir),
        }),
      );
    }
  };
  follow(store.current.config);
  store.onSwap((next) => follow(next.config));
  // A file the failed policy needs and that is outside every watched
  // folder (a certificate an ACME client has yet to write): watch where it
  // will appear, so that its arrival is noticed. The next good policy's
  // folders replace these.
  store.onFailure((error) => {
    const file = (error as { file?: unknown }).file;
    if (typeof file !== "string") return;
    const folder = dirname(resolve(file));
    const covered = [...watches.keys()].some((watched) => isWithin(folder, watched));
    if (covered || watches.size >= MAX_FOLDERS) return;
    watches.set(
      folder,
      watchTree(folder, reload, {
        debounceMs: options.debounceMs ?? 30,
        pollMs: options.pollMs ?? 500,
        maxDepth: 0,
      }),
    );
  });
  const stopHangup = options.onHangup?.(() => void store.reload("signal"));

  return {
    close() {
      stopHangup?.();
      for (const watch of watches.values()) watch.close();
      watches.clear();
    },
  };
}

/**
 * Folders to watch, with how deep: the configuration directory, and the
 * folder of each certificate file outside it (only that folder, which is
 * where certbot's `live/<name>/` symlinks are swapped).
 */
export function watchedFolders(config: Config): Map<string, number> {
  const folders = new Map<string, number>();
  if (config.configDir === undefined) return folders;
  folders.set(config.configDir, 4);
  for (const pair of config.certificates) {
    for (const file of [pair.source, pair.keySource]) {
      if (file === undefined) continue;
      const folder = dirname(resolve(file));
      if (!isWithin(folder, config.configDir)) folders.set(folder, 0);
    }
  }
  return folders;
}

/** True when `path` is `folder` or inside it. */
export function isWithin(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  // "..data" (a ConfigMap's folder) is inside; ".." and "../x" are not.
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}
