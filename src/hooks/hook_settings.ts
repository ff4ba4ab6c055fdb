/**
 * What the hook runner is given and what it reports: the `hooks` section of
 * the configuration, the runner's options, a hook's status, and the error
 * of a hook that cannot run at start-up.
 *
 * @module
 */

import type { HookPoint } from "../../hooks/mod.ts";
import type { Counters, Logger } from "../log/mod.ts";
import type { EmbeddedDeno } from "./hook_runtime.ts";
import type { OutputLimits } from "./output_budget.ts";
import type { HookGrants } from "./sandbox.ts";
import type { SharedStore } from "./shared_state.ts";

/** Settings of one hook point. */
export interface HookSettings {
  timeoutMs: number;
  workers: number;
  maxMemoryBytes: number;
  /** What each worker's output may put in the log each second. */
  outputLimits: OutputLimits;
  allow: HookGrants;
}

/** The `hooks` section of the configuration. */
export interface HooksConfig {
  /** Path of deno, when configured. */
  deno: string | undefined;
  /** Run executable hooks, which no sandbox contains. */
  allowUnsandboxedExec: boolean;
  points: Record<HookPoint, HookSettings>;
}

/** What the runner needs. */
export interface HookRunnerOptions {
  /** The configuration directory; without one there are no hooks. */
  configDir: string | undefined;
  dataDir: string;
  config: HooksConfig;
  logger: Logger;
  counters: Counters;
  env: (name: string) => string | undefined;
  /** The running executable, which may be deno itself. */
  execPath: string;
  /** Watch the hooks folder for changes. Default: true. */
  watch?: boolean;
  /** A hook point's own log for its output; default: the application log. */
  outputFor?: (point: HookPoint) => ((line: string) => void) | undefined;
  /** The deno that the binary carries, when it carries one. */
  embeddedDeno?: EmbeddedDeno | undefined;
  /** The fleet's shared state for module hooks' `shared.*`; absent: those calls fail. */
  shared?: SharedStore | undefined;
}

/** A hook set up at start-up cannot run (no deno, executable not allowed). */
export class HookSetupError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "HookSetupError";
  }
}

/** Status of one hook point, for logs and the admin API. */
export interface HookStatus {
  hook: HookPoint;
  form: "module" | "exec" | "broken";
  workers?: number;
  restarts?: number;
  error?: string;
}
