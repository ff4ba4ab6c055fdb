/**
 * Executable hooks, chasquid's exact protocol: one process per call, the
 * message (post-data) on standard input, the transaction in the
 * environment, the address (alias hooks) as the single argument. They are
 * native programs that Deno's flags cannot sandbox, so they run only when
 * the configuration opts in (`hooks.allow_unsandboxed_exec`).
 *
 * @module
 */

import { spawnProcess, type SpawnResult } from "../runtime/mod.ts";
import type { PostDataInput } from "../../hooks/mod.ts";

/** The most an executable hook may write to standard output (and the stderr kept). */
export const MAX_OUTPUT_BYTES = 64 * 1024;

/**
 * Runs an executable hook once. A hook that writes more than
 * {@linkcode MAX_OUTPUT_BYTES} to standard output is killed at once and
 * comes back as killed (exit status null, no output), with the reason as
 * its standard error and the bytes read in `stdoutOverflow`: its answer is
 * not used, so each hook point treats the call as a failed one.
 */
export async function runExecHook(options: {
  path: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  stdin?: AsyncIterable<Uint8Array>;
  timeoutMs: number;
}): Promise<SpawnResult> {
  const result = await spawnProcess({
    argv: [options.path, ...options.args],
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin ?? empty(),
    timeoutMs: options.timeoutMs,
    maxOutputBytes: MAX_OUTPUT_BYTES,
    onStdoutExcess: "kill",
  });
  if (result.stdoutOverflow === undefined) return result;
  // The whole of stdout is the answer: chasquid's reference reads post-data's
  // headers from it, "the last line of stdout" as the reply text, and
  // alias-resolve's output "as if it was the right-hand side" of an alias.
  // A beginning is a different answer (the last line from the middle, an
  // address cut to a local one), so none of it is acted on.
  return {
    exitCode: null,
    timedOut: result.timedOut,
    stdout: "",
    stderr: `${options.path} wrote more than ${MAX_OUTPUT_BYTES} bytes to standard output ` +
      `(${result.stdoutOverflow} read); it was killed and its answer not used`,
    stdoutOverflow: result.stdoutOverflow,
  };
}

/**
 * The environment of an executable hook: `USER`, `SHELL` and `PATH` from
 * Postern's own, `PWD` (the configuration directory, where it runs), and
 * for post-data the transaction, named as chasquid names it. chasquid's
 * reference lists `USER` and `SHELL` as always present, so they are set
 * even when Postern's environment lacks them: empty.
 */
export function execHookEnv(
  lookup: (name: string) => string | undefined,
  cwd: string,
  input?: PostDataInput,
): Record<string, string> {
  const env: Record<string, string> = {
    USER: lookup("USER") ?? "",
    SHELL: lookup("SHELL") ?? "",
    PATH: lookup("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    PWD: cwd,
  };
  if (input) {
    Object.assign(env, {
      REMOTE_ADDR: input.remoteAddr,
      EHLO_DOMAIN: input.ehloDomain,
      MAIL_FROM: input.mailFrom,
      RCPT_TO: input.rcptTo.join(" "),
      AUTH_AS: input.authAs,
      ON_TLS: input.onTls ? "1" : "0",
      FROM_LOCAL_DOMAIN: input.fromLocalDomain ? "1" : "0",
      SPF_PASS: input.spfPass ? "1" : "0",
    });
  }
  return env;
}

function empty(): AsyncIterable<Uint8Array> {
  return (async function* () {})();
}
