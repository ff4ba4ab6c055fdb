/**
 * The policy in force and its hot reload: an immutable snapshot per epoch,
 * swapped atomically when a changed configuration validates, the last good
 * one kept when it does not; the watcher that notices changes however they
 * are written; and the settings that need a restart instead.
 *
 * @module
 */

export { isWithin, startReloader, watchedFolders } from "./reloader.ts";
export type { Reloader, ReloaderOptions } from "./reloader.ts";
export { consistentLoad } from "./consistent.ts";
export {
  confirmRemovals,
  type ConfirmRemovalsOptions,
  keepRecipients,
  lostRecipients,
  refuseUnfinishedSaves,
  unfinishedSave,
} from "./removals.ts";
export { restartOnlyChanges } from "./restart.ts";
export { PolicyStore } from "./store.ts";
export type { PolicySnapshot, PolicyStatus, PolicyStoreOptions, ReloadCause } from "./store.ts";
export { fingerprint, watchTree } from "./watcher.ts";
export type { TreeWatch, WatchOptions } from "./watcher.ts";
