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

/** Standard output kept from an executable hook. */
const MAX_OUTPUT_BYTES = 64 * 1024;

/** Runs an executable hook once. */
export function runExecHook(options: {
  path: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  stdin?: AsyncIterable<Uint8Array>;
  timeoutMs: number;
}): Promise<SpawnResult> {
  return spawnProcess({
    argv: [options.path, ...options.args],
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin ?? empty(),
    timeoutMs: options.timeoutMs,
    maxOutputBytes: MAX_OUTPUT_BYTES,
  });
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
