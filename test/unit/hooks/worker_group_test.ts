/**
 * A worker's process group, against real deno workers: a program a hook
 * started under `allow.run` ends with the worker, whether a timeout ended
 * it, the pool was killed, or the worker exited by itself.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import process from "node:process";
import { after, afterEach, before, describe, it } from "node:test";
import type { ModulePool } from "../../../src/hooks/module_pool.ts";
import { NO_GRANTS } from "../../../src/hooks/sandbox.ts";
import type { CallOutcome } from "../../../src/hooks/worker.ts";
import { ManualClock } from "./manual_clock.ts";
import { PoolFixture } from "./pool_fixture.ts";

/** True while `pid` runs (a zombie has ended: only its parent has not collected it yet). */
function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[0] !== "Z";
  } catch {
    return false;
  }
}

/** Waits until `pid` no longer runs; fails after about 4 s (within bun test's 5 s per test). */
async function ended(pid: number, what: string): Promise<void> {
  for (let i = 0; i < 200 && running(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!running(pid), `${what} (pid ${pid}) still runs`);
}

function valueOf(outcome: CallOutcome): unknown {
  if (!outcome.ok) assert.fail(`expected a value, got ${outcome.failure}: ${outcome.error}`);
  return outcome.value;
}

/**
 * The hook: `start` starts /bin/sleep (the one program granted) in the
 * background and answers its pid; `hang` never answers; `exit` ends the
 * worker.
 */
const HOOK = `
export default async function (input) {
  if (input.start) {
    const child = new Deno.Command("/bin/sleep", {
      args: ["127"], stdin: "null", stdout: "null", stderr: "null",
    }).spawn();
    child.unref();
    return child.pid;
  }
  if (input.hang) return await new Promise(() => {});
  if (input.exit) setTimeout(() => Deno.exit(3), 10);
  return 0;
}`;

describe("HookWorker process group", { skip: process.platform !== "linux" }, () => {
  let fixture: PoolFixture;
  const started: number[] = [];

  before(async () => {
    fixture = await PoolFixture.create("postern-group-");
  });
  afterEach(() => {
    fixture.killAll();
    // What a failed test left running, by PID.
    for (const pid of started.splice(0)) {
      if (running(pid)) process.kill(pid, "SIGKILL");
    }
  });
  after(() => fixture.remove());

  /** A pool for the hook; its time limits run on `clock` when given (the test moves it). */
  function startPool(timeoutMs = 15_000, clock?: ManualClock): Promise<ModulePool> {
    return fixture.start(HOOK, { timeoutMs, clock, grants: { ...NO_GRANTS, run: ["/bin/sleep"] } });
  }

  async function startSleep(pool: ModulePool): Promise<number> {
    const pid = valueOf(await pool.call({ start: true })) as number;
    started.push(pid);
    assert.ok(running(pid), "the hook's program runs");
    return pid;
  }

  it("a program the hook started ends when a timeout ends its worker", async () => {
    // The time runs out when the test says, not during the worker's start-up.
    const clock = new ManualClock();
    const pool = await startPool(1000, clock);
    const sleeper = await startSleep(pool);
    const call = pool.call({ hang: true });
    clock.advance(1000);
    const stuck = await call;
    assert.equal(!stuck.ok && stuck.failure, "timeout");
    await ended(sleeper, "the hook's /bin/sleep");
  });

  it("a program the hook started ends when the pool is killed", async () => {
    const pool = await startPool();
    const sleeper = await startSleep(pool);
    pool.kill();
    await ended(sleeper, "the hook's /bin/sleep");
  });

  it("a program the hook started ends when its worker exits by itself", async () => {
    const pool = await startPool();
    const sleeper = await startSleep(pool);
    await pool.call({ exit: true });
    await ended(sleeper, "the hook's /bin/sleep");
  });
});
