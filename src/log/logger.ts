/**
 * Application log: start-up, configuration, errors. Mail events go to the
 * mail log instead (see `maillog.ts`).
 *
 * @module
 */

import { formatFields, formatValue, type LogFields } from "./format.ts";

/** Log levels in increasing severity. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Where finished log lines go (one call per line, newline included). */
export type LogSink = (line: string) => void;

/** A leveled logger writing `ts=… level=… msg=…` lines. */
export class Logger {
  #min: number;
  #sink: LogSink;
  #clock: () => Date;

  /** Creates a logger that drops lines below `level`. */
  constructor(level: LogLevel, sink: LogSink, clock: () => Date = () => new Date()) {
    this.#min = LOG_LEVELS.indexOf(level);
    this.#sink = sink;
    this.#clock = clock;
  }

  /** Changes the lowest level written (a policy reload). */
  setLevel(level: LogLevel): void {
    this.#min = LOG_LEVELS.indexOf(level);
  }

  /** Logs at debug level. */
  debug(msg: string, fields: LogFields = {}): void {
    this.#write(0, msg, fields);
  }

  /** Logs at info level. */
  info(msg: string, fields: LogFields = {}): void {
    this.#write(1, msg, fields);
  }

  /** Logs at warn level. */
  warn(msg: string, fields: LogFields = {}): void {
    this.#write(2, msg, fields);
  }

  /** Logs at error level. */
  error(msg: string, fields: LogFields = {}): void {
    this.#write(3, msg, fields);
  }

  #write(level: number, msg: string, fields: LogFields): void {
    if (level < this.#min) return;
    const head = `ts=${this.#clock().toISOString()} level=${LOG_LEVELS[level]} msg=${
      formatValue(msg)
    }`;
    const rest = formatFields(fields);
    this.#sink(rest ? `${head} ${rest}\n` : `${head}\n`);
  }
}
