/**
 * Executable hooks that write more than 64 KiB to standard output, end to
 * end: what they said past the limit would change their answer (the last
 * line of stdout is the reply text, alias-resolve's output is a list of
 * targets), so the call fails, temporarily, and no part of it is used.
 */

import assert from "node:assert/strict";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  freePort,
  maildirMessages,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

/** The post-data hook: what it prints is picked by the recipient. */
const POST_DATA = `#!/bin/sh
cat > /dev/null
case "$RCPT_TO" in
  reject@example.test)
    # 85 KB of diagnostics, then the reason: the last line of stdout.
    head -c 85000 /dev/zero | tr '\\0' 'x' | fold -w 80
    echo "Real reason: spam score 99"
    exit 20 ;;
  headers@example.test)
    # 100 valid fields of 900 bytes: the last ones are past 64 KiB.
    i=0; while [ $i -lt 100 ]; do printf 'X-Pad-%03d: %0900d\\n' $i 0; i=$((i + 1)); done
    exit 0 ;;
esac
exit 0
`;

/**
 * The alias-resolve hook: for big@, the audit's answer of 65,551
 * characters, a valid list whose last target is remote; cut at 64 KiB it
 * would end in carol@example.test, a local user.
 */
const ALIAS_RESOLVE = `#!/bin/sh
case "$1" in
  big@example.test)
    i=0; while [ $i -lt 5458 ]; do printf 'x@pad.test, '; i=$((i + 1)); done
    printf '%22s' ''
    printf 'carol@example.test.attacker.test\\n'
    exit 0 ;;
esac
exit 0
`;

describe("executable hooks whose output passes 64 KiB", () => {
  let server: Server;

  before(async () => {
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mx.example.test",
        "hooks:",
        "  allow_unsandboxed_exec: true",
        "delivery:",
        "  retry_initial: 1s",
        "  retry_max: 2s",
        // Nothing listens there: a remote target is deferred, never sent.
        "outbound:",
        "  smarthost:",
        `    address: 127.0.0.1:${await freePort()}`,
        "",
      ].join("\n"),
      "domains/example.test/users": "alice\ncarol\nbig\nreject\nheaders\n",
      "hooks/post-data": POST_DATA,
      "hooks/alias-resolve": ALIAS_RESOLVE,
    });
    for (const hook of ["post-data", "alias-resolve"]) {
      await chmod(join(configDir, "hooks", hook), 0o755);
    }
    server = await startServer({ configDir });
  });
  after(() => cleanup(server));

  /** The reply to the end of DATA: the last reply before QUIT's 221. */
  const dataReply = (output: string) =>
    replies(output).filter((l) => !l.startsWith("221 ")).at(-1) ?? "";

  it("post-data: exit 20 after 85 KB of output is a temporary failure, not a reply from the middle", async () => {
    const result = await swaks(server, ["--to", "reject@example.test"]);
    assert.equal(
      dataReply(result.stdout),
      "451 4.3.0 Message could not be checked, try again later",
      result.stdout,
    );
    await server.waitForLog(/event=rejected stage=data reason=post_data_failure /);
    assert.match(
      server.stderr(),
      /post-data hook failed.*cause="output: \S*post-data wrote more than 65536 bytes to standard output \(\d+ read\)/,
    );
  });

  it("post-data: headers past 64 KiB refuse the message rather than add the first ones", async () => {
    const result = await swaks(server, ["--to", "headers@example.test"]);
    assert.equal(
      dataReply(result.stdout),
      "451 4.3.0 Message could not be checked, try again later",
      result.stdout,
    );
    assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "headers"), []);
  });

  it("alias-resolve: an answer past 64 KiB defers the delivery; carol, where the cut ends, gets nothing", async () => {
    const result = await swaks(server, ["--to", "big@example.test", "--header", "Subject: big"]);
    const qid = /250 2\.0\.0 Ok: queued as (\w+)/.exec(result.stdout)?.[1];
    assert.ok(qid, result.stdout);
    // The first delivery line of the message says what became of it.
    const line = await server.waitForLog(new RegExp(`qid=${qid} event=delivery `));
    assert.match(line, /to=<big@example\.test> result=deferred /);
    assert.match(
      line,
      /alias-resolve hook failed: exit status null: \S+\/hooks\/alias-resolve wrote more than 65536 bytes to standard output \(\d+ read\)/,
    );
    assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "carol"), []);
    assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "big"), []);
  });
});
