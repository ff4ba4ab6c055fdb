/**
 * Pipe aliases (`name: | command args`): the message goes to the command's
 * standard input. Exit statuses follow sysexits(3) as Postfix's pipe(8)
 * reads them: 75 (EX_TEMPFAIL) is temporary, other failures permanent; a
 * command that cannot be started or runs too long is retried.
 *
 * @module
 */

import { privateDetail } from "../outbound/bounce.ts";
import { spawnProcess } from "../runtime/mod.ts";
import type { DeliveryResult } from "../queue/mod.ts";

const EX_TEMPFAIL = 75;

/**
 * Runs a pipe alias; never throws. The error of a failure says in public
 * only that a pipe failed, and how (its exit status); the command line and
 * its last line of output are a {@linkcode privateDetail}, for the mail log:
 * the command may name private paths and arguments, and its output anything.
 */
export async function deliverToPipe(
  argv: readonly string[],
  env: Record<string, string>,
  input: AsyncIterable<Uint8Array>,
  timeoutMs: number,
  cwd: string,
): Promise<DeliveryResult> {
  const result = await spawnProcess({ argv, env, stdin: input, timeoutMs, cwd });
  const command = argv.join(" ");
  const lastLine = (result.stderr.trim() || result.stdout.trim()).split("\n").at(-1) ?? "";
  if (result.timedOut) {
    return {
      status: "deferred",
      error: `pipe delivery failed (timed out)${
        privateDetail(`pipe "${command}" ran longer than ${timeoutMs} ms`)
      }`,
    };
  }
  if (result.exitCode === 0) return { status: "sent", detail: `| ${command}` };
  const how = result.exitCode === null ? "killed by a signal" : `exit status ${result.exitCode}`;
  const why = `pipe "${command}" ${
    result.exitCode === null ? "was killed by a signal" : `exited with status ${result.exitCode}`
  }${lastLine ? `: ${lastLine}` : ""}`;
  // 126/127: the command could not be run, which the operator can fix
  // without the sender's help; keep the message until then.
  const temporary = result.exitCode === EX_TEMPFAIL || result.exitCode === null ||
    result.exitCode === 126 || result.exitCode === 127;
  return {
    status: temporary ? "deferred" : "failed",
    error: `pipe delivery failed (${how})${privateDetail(why)}`,
  };
}
