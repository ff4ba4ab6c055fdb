/**
 * A hook replaced while the binary's deno is checked for the new one: calls
 * meanwhile are answered by the hook being replaced. The runner closed the
 * old workers before it awaited that check (`EmbeddedDeno.prepare()`, a
 * stat once the copy is known), so a call in between failed with "the hook
 * was unloaded": a post-data hook answered the client with a temporary
 * refusal, a pre-delivery-attempt hook deferred the delivery.
 *
 * @module
 */

import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { env, execPath } from "node:process";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { findDeno } from "../../../src/hooks/find_deno.ts";
import type { EmbeddedDeno } from "../../../src/hooks/hook_runtime.ts";
import { HookRunner } from "../../../src/hooks/runner.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { deferred, makeTempDir, removeDir, until } from "../helpers.ts";

/** An alias-exists hook that knows one address. */
const hookFor = (address: string) =>
  `export default (input: { address: string }) => input.address === "${address}";\n`;

/** The deno the runner would find on PATH, which plays the binary's own here. */
function denoOnPath(): string {
  const found = findDeno({ env: (name) => env[name], execPath });
  if (!found) throw new Error("these tests need deno on PATH");
  return found.path;
}

describe("HookRunner: a hook replaced while its runtime is checked", () => {
  let dir: string;
  let runner: HookRunner | undefined;

  before(async () => {
    dir = await makeTempDir("postern-runner-reload-");
  });
  after(async () => {
    runner?.close();
    await removeDir(dir);
  });

  it("answers calls with the old hook until the new one is in place", {
    timeout: 60_000,
  }, async () => {
    const configDir = join(dir, "config");
    await mkdir(join(configDir, "hooks"), { recursive: true });
    const hookPath = join(configDir, "hooks", "alias-exists.ts");
    await writeFile(hookPath, hookFor("old@ex.test"));
    // The first check passes at once; later ones wait at a gate.
    let checks = 0;
    const gate = deferred<void>();
    let waiting = false;
    const embeddedDeno = {
      path: denoOnPath(),
      version: "test",
      prepare: async () => {
        if (checks++ > 0) {
          waiting = true;
          await gate.promise;
        }
        return { path: denoOnPath(), action: "verified", ms: 0 };
      },
    } as unknown as EmbeddedDeno;
    const config = (await loadConfig()).hooks;
    runner = await HookRunner.start({
      configDir,
      dataDir: join(dir, "data"),
      config,
      logger: new Logger("error", () => {}),
      counters: new Counters(),
      env: (name) => name === "PATH" ? "" : undefined,
      execPath,
      embeddedDeno,
      watch: false,
    });
    assert.equal((await runner.aliasExists("old@ex.test"))?.exists, true);

    // A new hook, and new settings for it: the runner installs it afresh.
    await writeFile(hookPath, hookFor("new@ex.test"));
    const replaced = runner.reconfigure({
      ...config,
      points: {
        ...config.points,
        "alias-exists": { ...config.points["alias-exists"], timeoutMs: 4_000 },
      },
    });
    await until(() => waiting);
    const meanwhile = await runner.aliasExists("old@ex.test");
    assert.equal(meanwhile?.cause, undefined, `no failure while the new hook is prepared`);
    assert.equal(meanwhile?.exists, true, "the old hook answers meanwhile");
    gate.resolve();
    await replaced;
    assert.equal((await runner.aliasExists("new@ex.test"))?.exists, true);
    assert.equal((await runner.aliasExists("old@ex.test"))?.exists, false);
  });
});
