/**
 * What the executable hook tests share: the hooks, as shell scripts that
 * record their input, arguments and environment under `captures/` (the
 * canary variable they must not see included), the server that runs them,
 * and readers of swaks's replies.
 *
 * @module
 */

import assert from "node:assert/strict";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { freePort, replies, type Server, startServer, tempDir, writeTree } from "./harness.ts";

/** Set in the test's environment, which the server inherits; no hook may see it. */
export const CANARY = "POSTERN_TEST_HOOK_CANARY";

/**
 * The post-data hook: saves its input and environment (as the kernel handed
 * it over, before the shell touches it) under `captures/` of its working
 * directory, then acts on the recipients.
 */
export const POST_DATA = `#!/bin/sh
tag=$(printf '%s' "$RCPT_TO" | tr -c 'A-Za-z0-9' '_')
cat > "captures/$tag.eml"
tr '\\0' '\\n' < /proc/$$/environ > "captures/$tag.env"
pwd -P > "captures/$tag.cwd"
case " $RCPT_TO " in
  *" reject@example.test "*)
    echo "a line that is not the reason"
    echo "Spam detected, go away"
    exit 20 ;;
  *" defer@example.test "*)
    echo "a line that is not the reason"
    echo "Greylisted, try again later"
    exit 1 ;;
  *" slow@example.test "*)
    sleep 15
    exit 0 ;;
  *" headers@example.test "*)
    printf 'X-Hook-One: first\\n'
    printf 'this line is not a header\\n'
    printf 'X-Hook-Two: second\\n'
    printf '\\tcontinued\\n'
    printf 'Bad Name: a space in the name\\n'
    printf '  orphan continuation\\n'
    printf 'X-Hook-Three: third\\n'
    exit 0 ;;
esac
exit 0
`;

/** The alias-exists hook: knows ghost@ and piped@, records every call. */
export const ALIAS_EXISTS = `#!/bin/sh
printf '%s|%s\\n' "$#" "$*" >> captures/alias-exists.calls
case "$1" in
  ghost@example.test|piped@example.test) exit 0 ;;
esac
exit 1
`;

/** The alias-resolve hook; `pipe` is the command line piped@ resolves to. */
export function aliasResolve(pipe: string): string {
  return `#!/bin/sh
printf '%s|%s\\n' "$#" "$*" >> captures/alias-resolve.calls
case "$1" in
  list@example.test) echo "alice@example.test, bob" ;;
  piped@example.test) echo "| ${pipe}" ;;
  broken@example.test)
    if [ -e captures/fixed ]; then exit 0; fi
    echo "the alias database is down" >&2
    exit 3 ;;
esac
exit 0
`;
}

/** Parses `NAME=value` lines. */
export function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const eq = line.indexOf("=");
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** The queue ID in a `250 2.0.0 Ok: queued as <id>` reply, or a failure. */
export function queuedId(output: string): string {
  const accepted = replies(output).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
  assert.ok(accepted, output);
  return accepted.split(" ").at(-1)!;
}

/** The reply swaks got to its RCPT command. */
export function rcptReply(output: string): string {
  const lines = output.split("\n");
  const sent = lines.findIndex((l) => / [-~]> RCPT TO:/.test(l));
  assert.ok(sent >= 0, output);
  const answer = lines.slice(sent + 1).find((l) => /^<(-|~|\*\*|~\*\*) /.test(l));
  return answer ? answer.replace(/^<\S*\s+/, "") : "";
}

/** The reply to the end of DATA: the last reply before QUIT's 221. */
export function dataReply(output: string): string {
  const lines = replies(output).filter((l) => !l.startsWith("221 "));
  return lines.at(-1) ?? "";
}

/** The protocol tests' server and the files its hooks and pipe alias write. */
export interface ExecHookServer {
  server: Server;
  /** A scratch folder: the pipe alias's script and what it writes. */
  scratch: string;
  /** The file the pipe alias piped@ resolves to writes its message to. */
  pipeOut: string;
}

/**
 * Starts the server with the three executable hooks (post-data times out
 * after 2s), file aliases, and a smarthost nothing listens on. The server
 * inherits USER and SHELL set to test values and the canary, which are
 * restored in this process once it has started.
 */
export async function startExecHookServer(): Promise<ExecHookServer> {
  const saved: Record<string, string | undefined> = {};
  let server: Server;
  const scratch = await tempDir("postern-exec-hooks-");
  const pipeOut = join(scratch, "piped.eml");
  const pipeScript = join(scratch, "pipe.sh");
  await writeFile(pipeScript, `#!/bin/sh\ncat > "$1"\n`);
  await chmod(pipeScript, 0o755);

  const configDir = await tempDir("postern-config-");
  await writeTree(configDir, {
    "postern.yaml": [
      "hostname: mx.example.test",
      "hooks:",
      "  allow_unsandboxed_exec: true",
      "  post_data:",
      "    timeout: 2s",
      "delivery:",
      "  retry_initial: 1s",
      "  retry_max: 2s",
      // Nothing listens there: fwd@'s remote copy is deferred, never
      // sent nor bounced, so its spool file stays for the tests to read.
      "outbound:",
      "  smarthost:",
      `    address: 127.0.0.1:${await freePort()}`,
      "",
    ].join("\n"),
    "domains/example.test/users":
      "alice\nbob\ncarol\nreject\ndefer\nslow\nheaders\nbroken\ntls\nlate\n",
    "domains/example.test/aliases": "fwd: someone@remote.test\nlist: carol\n",
    "hooks/post-data": POST_DATA,
    "hooks/alias-resolve": aliasResolve(`${pipeScript} ${pipeOut}`),
    "hooks/alias-exists": ALIAS_EXISTS,
    "captures/.keep": "",
  });
  for (const hook of ["post-data", "alias-resolve", "alias-exists"]) {
    await chmod(join(configDir, "hooks", hook), 0o755);
  }

  // The server inherits the test's environment: USER, SHELL and PATH
  // must reach the hooks, the canary must not.
  for (const name of ["USER", "SHELL", CANARY]) saved[name] = process.env[name];
  process.env["USER"] = "postern-hook-user";
  process.env["SHELL"] = "/bin/postern-test-shell";
  process.env[CANARY] = "leaked";
  try {
    server = await startServer({ configDir });
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  return { server, scratch, pipeOut };
}
