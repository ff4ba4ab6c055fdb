/**
 * The harness cleans up after the tests that use it: a test file that
 * makes temporary directories and leaves a server running, passed or
 * failed, leaves no directory and no process behind. Checked by running
 * such a file in a child test run with its own TMPDIR.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { eventually, ROOT, TARGET } from "./harness.ts";

const FIXTURE = `
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { startServer, tempDir, writeTree } from "HARNESS";

const record = (line: string) => writeFile(process.env.FIXTURE_OUT!, line + "\\n", { flag: "a" });

describe("a file that forgets to clean up", () => {
  it("makes a directory and leaves it", async () => {
    const dir = await tempDir("postern-pipe-");
    await writeTree(dir, { "pipe.sh": "#!/bin/sh\\n" });
    await record("dir " + dir);
  });
  it("starts a server and never stops it", async () => {
    const server = await startServer({ config: { "domains/example.test/users": "alice\\n" } });
    await record("pid " + server.child.pid);
    await record("dir " + server.dataDir);
  });
  it("fails after making a directory", async () => {
    await record("dir " + join(await tempDir(), "x"));
    throw new Error("failed on purpose");
  });
});
`;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("harness", () => {
  it("removes the temporary directories and stops the servers a test file left, passed or failed", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "postern-harness-"));
    try {
      const tmp = join(scratch, "tmp");
      await mkdir(tmp);
      const fixture = join(scratch, "fixture_test.ts");
      const harness = pathToFileURL(join(ROOT, "test", "e2e", "harness.ts")).href;
      await writeFile(fixture, FIXTURE.replace("HARNESS", harness));
      const out = join(scratch, "out.txt");
      const env = { ...process.env, TMPDIR: tmp, FIXTURE_OUT: out, POSTERN_TARGET: TARGET };
      const result = await new Promise<{ code: number; output: string }>((res) => {
        const args = "Bun" in globalThis
          ? [process.execPath, "test", "--timeout", "60000", fixture]
          : [process.execPath, "test", "-A", fixture];
        execFile(
          args[0]!,
          args.slice(1),
          { cwd: ROOT, env, timeout: 120_000 },
          (err, o, e) => res({ code: err ? 1 : 0, output: `${o}${e}` }),
        );
      });
      // The fixture fails on purpose; its other tests ran.
      assert.equal(result.code, 1, result.output);
      const lines = (await readFile(out, "utf8")).trim().split("\n");
      assert.equal(lines.filter((l) => l.startsWith("dir ")).length, 3, lines.join("\n"));
      const pid = Number(lines.find((l) => l.startsWith("pid "))?.slice(4));
      assert.ok(pid > 0, lines.join("\n"));
      await eventually(
        () => Promise.resolve(alive(pid) ? undefined : true),
        10_000,
        "the server to end",
      );
      assert.deepEqual(await readdir(tmp), [], result.output);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});
