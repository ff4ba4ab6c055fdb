/**
 * Hooks: chasquid's post-data, alias-resolve and alias-exists hook points,
 * scripted in TypeScript (module hooks in sandboxed deno workers) or, when
 * the configuration allows it, as executables with chasquid's protocol.
 *
 * @module
 */

export {
  HookRunner,
  type HookRunnerOptions,
  type HooksConfig,
  type HookSettings,
  HookSetupError,
  type HookStatus,
} from "./runner.ts";
export { AliasHookError, type AliasHookOptions, aliasHookTargets } from "./alias_targets.ts";
export type { AliasExistsVerdict, AliasResolveVerdict, PostDataVerdict } from "./points.ts";
export { postDataOutcome } from "./points.ts";
export { type HookGrants, NO_GRANTS } from "./sandbox.ts";
export { ModulePool, type ModulePoolOptions } from "./module_pool.ts";
export type { CallOutcome } from "./worker.ts";
export { hookFrame, loadErrorSummary, plainText } from "./load_error.ts";
export { WORKER_SOURCE } from "./worker_source.ts";
export { findDeno } from "./find_deno.ts";
export type { DenoSearch, FoundDeno } from "./find_deno.ts";
export {
  denoVersion,
  describeHookRuntime,
  EmbeddedDeno,
  embeddedRuntime,
  hookRuntimeReporter,
  type HookRuntimeStatus,
} from "./hook_runtime.ts";
export { typeCheckHooks } from "./type_check.ts";
export type { TypeCheckResult } from "./type_check.ts";
