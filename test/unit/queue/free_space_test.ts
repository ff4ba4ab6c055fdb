import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FreeSpace } from "../../../src/queue/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

/** A FreeSpace over a scripted measurement and clock. */
function scripted(answers: Array<number | Error>) {
  const clock = { now: 0 };
  const calls: string[] = [];
  const space = new FreeSpace("/spool", {
    now: () => clock.now,
    measure: (path) => {
      calls.push(path);
      const answer = answers.shift();
      if (answer === undefined) throw new Error("measured more often than scripted");
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
  });
  return { space, clock, calls };
}

describe("FreeSpace", () => {
  it("available() measures once for every caller within a second, less what was spooled since", async () => {
    const { space, clock, calls } = scripted([1000, 5000]);
    assert.deepEqual(
      await Promise.all([space.available(), space.available(), space.available()]),
      [1000, 1000, 1000],
    );
    space.consumed(300);
    clock.now = 999;
    assert.equal(await space.available(), 700);
    space.consumed(900);
    assert.equal(await space.available(), 0);
    assert.deepEqual(calls, ["/spool"]);
    clock.now = 1000;
    assert.equal(await space.available(), 5000);
    assert.equal(calls.length, 2);
  });

  it("available() measures again once 64 MiB were spooled since, even within the second", async () => {
    const { space, calls } = scripted([1e12, 2e12]);
    assert.equal(await space.available(), 1e12);
    space.consumed(64 * 1024 * 1024);
    assert.equal(await space.available(), 2e12);
    assert.equal(calls.length, 2);
  });

  it("available() is undefined when the measurement fails, and tries again next time", async () => {
    const { space, calls } = scripted([new Error("ENOSYS"), 42]);
    assert.equal(await space.available(), undefined);
    assert.equal(await space.available(), 42);
    assert.equal(calls.length, 2);
  });

  it("available() measures a real directory with statfs", async () => {
    const dir = await makeTempDir("postern-free-");
    try {
      const free = await new FreeSpace(dir).available();
      assert.equal(typeof free, "number");
      assert.ok(free! > 0 && Number.isSafeInteger(free), String(free));
    } finally {
      await removeDir(dir);
    }
  });
});
