/**
 * The hook runner when something fails around the hooks rather than in
 * them: a hook that cannot run at start-up, after others already have
 * workers, and a refresh that throws part way. The first left the other
 * hooks' deno workers running beside a server that never started; the
 * second left the runner's queue of refreshes rejected, so every later
 * change of the hooks or of their settings was skipped until a restart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { env, execPath } from "node:process";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { HookRunner } from "../../../src/hooks/runner.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { pollUntil } from "../../support/within.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

/** PIDs of the running processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // A zombie has ended; only its parent has not collected it yet.
      if (stat.split(") ")[1]?.startsWith("Z")) continue;
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(text)) pids.push(Number(name));
    } catch {
      // Ended while being read.
    }
  }
  return pids;
}

describe("HookRunner: failures around the hooks", () => {
  let dir: string;

  before(async () => {
    dir = await makeTempDir("postern-runner-failures-");
  });
  after(async () => {
    await removeDir(dir);
  });

  it("ends the workers it started when a later hook cannot run at start-up", {
    timeout: 60_000,
  }, async () => {
    const configDir = join(dir, "start", "config");
    const dataDir = join(dir, "start", "data");
    await mkdir(join(configDir, "hooks"), { recursive: true });
    // post-data comes first and gets workers; alias-resolve is an
    // executable, which start-up refuses unless unsandboxed ones are allowed.
    await writeFile(join(configDir, "hooks", "post-data.ts"), "export default () => ({});\n");
    const exec = join(configDir, "hooks", "alias-resolve");
    await writeFile(exec, "#!/bin/sh\nexit 0\n");
    await chmod(exec, 0o755);
    const config = (await loadConfig()).hooks;
    assert.equal(config.allowUnsandboxedExec, false);
    let seenWorkers = 0;
    const logger = new Logger("debug", () => {
      seenWorkers = Math.max(seenWorkers, processesMentioning(dataDir).length);
    });
    await assert.rejects(
      HookRunner.start({
        configDir,
        dataDir,
        config: { ...config, points: { ...config.points } },
        logger,
        counters: new Counters(),
        env: (name) => env[name],
        execPath,
        watch: false,
      }),
      /allow_unsandboxed_exec/,
    );
    // The post-data workers had started (their command line names the
    // bootstrap under dataDir) before the executable was refused.
    assert.ok(seenWorkers > 0, "no post-data worker was seen running");
    await pollUntil(() => processesMentioning(dataDir).length === 0, "the workers to end");
  });

  it("applies later changes after a refresh that threw", { timeout: 60_000 }, async () => {
    const configDir = join(dir, "refresh", "config");
    const hooks = join(configDir, "hooks");
    await mkdir(hooks, { recursive: true });
    const config = (await loadConfig()).hooks;
    // The log fails once (a full disk, a closed pipe), inside a refresh:
    // discovery warns when a hook exists in both forms.
    let warnings = 0;
    const logger = new Logger("error", () => {});
    logger.warn = () => {
      if (warnings++ === 0) throw new Error("the log cannot be written");
    };
    const runner = await HookRunner.start({
      configDir,
      dataDir: join(dir, "refresh", "data"),
      config,
      logger,
      counters: new Counters(),
      env: (name) => env[name],
      execPath,
      watch: false,
    });
    try {
      await writeFile(join(hooks, "alias-exists.ts"), "export default () => true;\n");
      await writeFile(join(hooks, "alias-exists"), "#!/bin/sh\nexit 0\n");
      await chmod(join(hooks, "alias-exists"), 0o755);
      const slower = (timeoutMs: number) => ({
        ...config,
        points: {
          ...config.points,
          "alias-exists": { ...config.points["alias-exists"], timeoutMs },
        },
      });
      // The refresh that throws; the runner says so in its log, not to the caller.
      await runner.reconfigure(slower(40_000));
      assert.equal(warnings, 1);
      assert.equal(runner.has("alias-exists"), false);
      await rm(join(hooks, "alias-exists"));
      // The same settings as the failed refresh: it is owed all the same.
      await runner.reconfigure(slower(40_000));
      assert.equal(runner.has("alias-exists"), true, "the later change was skipped");
      assert.equal((await runner.aliasExists("someone@ex.test"))?.exists, true);
    } finally {
      runner.close();
    }
  });
});
