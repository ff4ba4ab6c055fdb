/**
 * One call of each hook point, whatever the hook's form: a module hook is
 * called through its pool, an executable with chasquid's arguments and
 * environment, and a broken hook answers as the point's failure does.
 *
 * @module
 */

import type { PostDataInput, PreDeliveryAttemptInput } from "../../hooks/mod.ts";
import { execHookEnv, runExecHook } from "./exec_hook.ts";
import type { InstalledHook } from "./hook_install.ts";
import {
  aliasExistsFromExec,
  aliasExistsFromModule,
  type AliasExistsVerdict,
  aliasResolveFromExec,
  aliasResolveFromModule,
  type AliasResolveVerdict,
  postDataFromExec,
  postDataFromModule,
  type PostDataVerdict,
} from "./points.ts";
import type { CallOutcome } from "./worker.ts";

/** What running an executable hook needs. */
export interface ExecContext {
  /** Reads Postern's environment. */
  env: (name: string) => string | undefined;
  /** The hook's working directory (the configuration directory). */
  cwd: string;
  timeoutMs: number;
}

/** Runs the post-data hook `installed` on a message that `open` streams (at most once). */
export async function callPostData(
  installed: InstalledHook,
  exec: ExecContext,
  input: PostDataInput,
  open: () => AsyncIterable<Uint8Array>,
): Promise<PostDataVerdict> {
  if (installed.form === "module") {
    return postDataFromModule(await installed.pool.call(input, lazily(open)));
  }
  if (installed.form === "exec") {
    const result = await runExecHook({
      path: installed.path,
      args: [],
      env: execHookEnv(exec.env, exec.cwd, input),
      cwd: exec.cwd,
      stdin: open(),
      timeoutMs: exec.timeoutMs,
    });
    return postDataFromExec(result, exec.timeoutMs);
  }
  return {
    kind: "refuse",
    permanent: false,
    text: "Message could not be checked, try again later",
    cause: `broken: ${installed.error}`,
  };
}

/** Runs the executable alias hook at `path` with `address` as its one argument. */
function runWithAddress(path: string, exec: ExecContext, address: string) {
  return runExecHook({
    path,
    args: [address],
    env: execHookEnv(exec.env, exec.cwd),
    cwd: exec.cwd,
    timeoutMs: exec.timeoutMs,
  });
}

/** Runs the alias-resolve hook `installed` for `address`. */
export async function callAliasResolve(
  installed: InstalledHook,
  exec: ExecContext,
  address: string,
): Promise<AliasResolveVerdict> {
  if (installed.form === "module") {
    return aliasResolveFromModule(await installed.pool.call({ address }));
  }
  if (installed.form === "exec") {
    return aliasResolveFromExec(
      await runWithAddress(installed.path, exec, address),
      exec.timeoutMs,
    );
  }
  return { ok: false, cause: `broken: ${installed.error}` };
}

/** Runs the alias-exists hook `installed` for `address`. */
export async function callAliasExists(
  installed: InstalledHook,
  exec: ExecContext,
  address: string,
): Promise<AliasExistsVerdict> {
  if (installed.form === "module") {
    return aliasExistsFromModule(await installed.pool.call({ address }));
  }
  if (installed.form === "exec") {
    return aliasExistsFromExec(await runWithAddress(installed.path, exec, address), exec.timeoutMs);
  }
  return { exists: false, cause: `broken: ${installed.error}` };
}

/**
 * Runs the pre-delivery-attempt hook `installed`: a module hook only, as
 * its state lives in its one worker.
 */
export async function callPreDeliveryAttempt(
  installed: InstalledHook,
  input: PreDeliveryAttemptInput,
): Promise<CallOutcome> {
  return installed.form === "module"
    ? await installed.pool.call(input)
    : installed.form === "broken"
    ? { ok: false, failure: "load_error", error: installed.error }
    : {
      ok: false,
      failure: "load_error",
      error: "the pre-delivery-attempt hook must be a TypeScript module (hooks/" +
        "pre-delivery-attempt.ts): its state lives in one worker",
    };
}

/**
 * An iterable that opens its source on the first read, so that a call
 * which fails before the hook reads (or never reads) opens no file.
 */
function lazily(open: () => AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      let source: AsyncIterator<Uint8Array> | undefined;
      return {
        next() {
          source ??= open()[Symbol.asyncIterator]();
          return source.next();
        },
        async return() {
          await source?.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
