/**
 * The `hooks` section of `postern.yaml`: where deno is, whether executable
 * hooks may run, and each hook point's time, workers, memory, output
 * budget and grants. `defaults.ts` holds the value a missing field takes.
 *
 * @module
 */

import * as v from "valibot";
import { Count, Duration, Names, Size, Text, TIMER } from "./fields.ts";

/**
 * Worker processes of one hook at most: each is a deno process with a heap
 * of its own, and the pool starts them all at once.
 */
const MAX_HOOK_WORKERS = 64;

/** Settings of one hook point. */
const HookPointSchema = v.nullish(v.strictObject({
  /** Time allowed per call. Default: 1m for post_data, 5s for the alias hooks. */
  timeout: v.optional(Duration(TIMER)),
  /** Worker processes of a module hook, each with its own state. Default: 1. */
  workers: v.optional(Count(1, MAX_HOOK_WORKERS)),
  /**
   * Memory limit of each worker: its V8 heap, and (Linux) everything it
   * allocates, within deno's margin (see `withDataLimit`). Default: 256MiB.
   */
  max_memory: v.optional(Size),
  /** Lines of a worker's output logged per second; the rest is dropped. Default: 200. */
  output_lines_per_second: v.optional(Count(1)),
  /** Bytes of a worker's output logged per second; the rest is dropped. Default: 64KiB. */
  output_bytes_per_second: v.optional(Size),
  /** What the hook may do beyond reading its own files. Default: nothing. */
  allow: v.optional(v.strictObject({
    /** Hosts (`host` or `host:port`) it may connect to. */
    net: v.optional(Names("a host or host:port")),
    /** Paths it may read, relative to the config directory. */
    read: v.optional(Names("a path")),
    /** Paths it may write, relative to the config directory. */
    write: v.optional(Names("a path")),
    /** Environment variables it may read. */
    env: v.optional(Names("a variable name")),
    /** Programs it may run (they run outside the sandbox). */
    run: v.optional(Names("a program")),
  })),
}));

/** Schema of the `hooks` section. */
export const HooksSchema = v.strictObject({
  /** The deno that runs TypeScript hooks. Default: $DENO_BIN, then deno on $PATH. */
  deno: v.optional(Text("a file path")),
  /** Run executable hooks, which no sandbox contains. Default: false. */
  allow_unsandboxed_exec: v.optional(v.boolean("must be true or false")),
  post_data: HookPointSchema,
  alias_resolve: HookPointSchema,
  alias_exists: HookPointSchema,
  pre_delivery_attempt: HookPointSchema,
});
