/**
 * Tests of `runExecHook()` with real programs: output past
 * MAX_OUTPUT_BYTES is never taken for the hook's answer, at any hook
 * point, however the hook exits.
 *
 * @module
 */

import assert from "node:assert/strict";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MAX_OUTPUT_BYTES, runExecHook } from "../../../src/hooks/exec_hook.ts";
import {
  aliasExistsFromExec,
  aliasResolveFromExec,
  postDataFromExec,
} from "../../../src/hooks/points.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

const ENV = { PATH: "/usr/bin:/bin" };

/**
 * The hook: its first argument picks what it prints. `alias` is the audit's
 * answer of 65,551 characters, a long valid list whose last target is
 * remote; cut at 64 KiB it would end in a local address.
 */
const HOOK = `#!/bin/sh
case "$1" in
  alias)
    i=0; while [ $i -lt 5458 ]; do printf 'x@pad.test, '; i=$((i + 1)); done
    printf '%22s' ''
    printf 'carol@example.test.attacker.test\\n'
    exit 0 ;;
  reject)
    head -c 85000 /dev/zero | tr '\\0' 'x' | fold -w 80
    echo "Real reason: spam score 99"
    exit 20 ;;
  headers)
    i=0; while [ $i -lt 100 ]; do printf 'X-Pad-%03d: %0900d\\n' $i 0; i=$((i + 1)); done
    exit 0 ;;
  exact)
    head -c ${MAX_OUTPUT_BYTES} /dev/zero | tr '\\0' 'a'
    exit 0 ;;
esac
exit 0
`;

describe("runExecHook", () => {
  let dir: string;
  let hook: string;
  before(async () => {
    dir = await makeTempDir();
    await writeTree(dir, { "hook": HOOK });
    hook = join(dir, "hook");
    await chmod(hook, 0o755);
  });
  after(() => removeDir(dir));

  const call = (arg: string) =>
    runExecHook({ path: hook, args: [arg], env: ENV, cwd: dir, timeoutMs: 20_000 });

  it("runExecHook() fails an alias-resolve answer past the limit instead of cutting it to a local address", async () => {
    const result = await call("alias");
    assert.equal(result.stdout, "");
    assert.equal(result.exitCode, null);
    assert.ok((result.stdoutOverflow ?? 0) > MAX_OUTPUT_BYTES, String(result.stdoutOverflow));
    const verdict = aliasResolveFromExec(result, 20_000);
    assert.equal(verdict.ok, false, JSON.stringify(verdict).slice(0, 300));
    const cause = (verdict as { cause: string }).cause;
    assert.ok(cause.includes(hook), cause);
    assert.match(cause, /wrote more than 65536 bytes to standard output \(\d+ read\)/);
    assert.doesNotMatch(cause, /carol/);
  });

  it("runExecHook() turns a post-data rejection past the limit into a temporary failure, not a reply from the middle", async () => {
    const verdict = postDataFromExec(await call("reject"), 20_000);
    assert.equal(verdict.kind, "refuse");
    const { permanent, text, cause } = verdict as {
      permanent: boolean;
      text: string;
      cause: string;
    };
    assert.equal(permanent, false);
    assert.equal(text, "Message could not be checked, try again later");
    assert.match(cause, /^output: .*wrote more than 65536 bytes to standard output \(\d+ read\)/);
  });

  it("runExecHook() adds none of the headers of a post-data answer past the limit", async () => {
    const verdict = postDataFromExec(await call("headers"), 20_000);
    assert.equal(verdict.kind, "refuse");
    assert.equal((verdict as { permanent: boolean }).permanent, false);
  });

  it("runExecHook() takes alias-exists output past the limit as a failure: the alias does not exist", async () => {
    const verdict = aliasExistsFromExec(await call("headers"), 20_000);
    assert.equal(verdict.exists, false);
    assert.match(verdict.cause ?? "", /^output: .*wrote more than 65536 bytes/);
  });

  it("runExecHook() uses an answer of exactly the limit as it is", async () => {
    const result = await call("exact");
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, "a".repeat(MAX_OUTPUT_BYTES));
    assert.equal(result.stdoutOverflow, undefined);
  });
});
