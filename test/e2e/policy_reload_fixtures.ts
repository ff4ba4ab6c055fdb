/**
 * What the policy reload tests share: RCPT probes that wait for a reload to
 * take effect, waits on the application log, and the in-place write that
 * most editors and `>` do.
 *
 * @module
 */

import { writeFile } from "node:fs/promises";
import { eventually, type Server, swaks } from "./harness.ts";

/** The reply to RCPT TO for `to`, from swaks. */
export async function rcptReply(server: Server, to: string): Promise<string> {
  const result = await swaks(server, [
    "--from",
    "sender@client.test",
    "--to",
    to,
    "--quit-after",
    "RCPT",
  ]);
  const lines = result.stdout.split("\n");
  const sent = lines.findIndex((l) => l.startsWith(" -> RCPT TO:"));
  const answer = lines.slice(sent + 1).find((l) => /^<(-|~|\*\*|~\*|~\*\*) /.test(l));
  return answer?.replace(/^<\S*\s+/, "") ?? `(no RCPT reply)\n${result.stdout}${result.stderr}`;
}

/** Waits until RCPT TO `to` gets a reply matching `expected`; returns it. */
export async function untilRcpt(server: Server, to: string, expected: RegExp): Promise<string> {
  let last = "";
  try {
    return await eventually(
      async () => {
        last = await rcptReply(server, to);
        return expected.test(last) ? last : undefined;
      },
      10_000,
      `RCPT ${to} to be answered ${expected}`,
    );
  } catch (err) {
    throw new Error(`${err} (last: ${last}); server log:\n${server.stderr()}`);
  }
}

/** Waits for an application log line (stderr) matching `match`, after `from` lines. */
export async function untilLog(server: Server, match: RegExp, from = 0): Promise<string> {
  try {
    return await eventually(
      () =>
        Promise.resolve(
          server.stderr().split("\n").slice(from).find((line) => match.test(line)),
        ),
      10_000,
      `a log line matching ${match}`,
    );
  } catch (err) {
    throw new Error(`${err}; server log:\n${server.stderr()}`);
  }
}

/** How many application log lines there are so far: the `from` of {@linkcode untilLog}. */
export const logLines = (server: Server) => server.stderr().split("\n").length - 1;

/** Writes in place: truncate and write, as most editors and `>` do. */
export const writeInPlace = (path: string, text: string) => writeFile(path, text);
