/**
 * Logging: the mail log (one line per mail event), the application log and
 * the outcome counters.
 *
 * @module
 */

export { BatchedSink } from "./batched_sink.ts";
export { Counters, HISTOGRAM_BUCKETS } from "./counters.ts";
export { FileSink } from "./file_sink.ts";
export type { Histogram } from "./counters.ts";
export { formatFields, formatValue, printable } from "./format.ts";
export type { LogFields, LogValue } from "./format.ts";
export { LOG_LEVELS, Logger } from "./logger.ts";
export type { LogLevel, LogSink } from "./logger.ts";
export { MailLog } from "./maillog.ts";
export type { ClientInfo } from "./maillog.ts";
