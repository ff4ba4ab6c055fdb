/**
 * The durable spool (atomic, fsynced, group-committed) and the delivery
 * queue with per-recipient state and retries.
 *
 * @module
 */

export { DirSyncer } from "./dir_sync.ts";
export { DurableFile, writeFileDurably } from "./durable_file.ts";
export { FreeSpace } from "./free_space.ts";
export type { FreeSpaceOptions } from "./free_space.ts";
export { isQueueId, newQueueId } from "./id.ts";
export { Queue } from "./queue.ts";
export type {
  AdminOutcome,
  Courier,
  DeliveryResult,
  NotifiedRecipient,
  Notifier,
  QueueEntryView,
  QueueOptions,
  RecipientRef,
} from "./queue.ts";
export { DeliveryStateSchema, EnvelopeSchema, initialState } from "./records.ts";
export type { DeliveryState, Envelope, RecipientStatus } from "./records.ts";
export { Spool, SpoolWriter } from "./spool.ts";
export type { CorruptFile, SpoolItem } from "./spool.ts";
