/**
 * The worker bootstrap, run by deno as Postern runs it (sandbox flags, the
 * hook's URL), without Postern's watcher around it: the end of its
 * requests ends it, also when the hook replaced the exit functions.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { findDeno } from "../../../src/hooks/find_deno.ts";
import { NO_GRANTS, sandboxFlags } from "../../../src/hooks/sandbox.ts";
import { WORKER_SOURCE } from "../../../src/hooks/worker_source.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("worker bootstrap", () => {
  let root: string;
  let deno: string;
  before(async () => {
    const found = findDeno({ env: (n) => process.env[n], execPath: process.execPath });
    assert.ok(found, "these tests need deno on PATH, in DENO_BIN, or as the running runtime");
    deno = found.path;
    root = await makeTempDir("postern-bootstrap-");
    await mkdir(join(root, "hooks"));
    await writeFile(join(root, "hook_worker.js"), WORKER_SOURCE);
  });
  after(() => removeDir(root));

  it("exits when its requests end, though the hook replaced Deno.exit and process.exit", async () => {
    const hooksDir = join(root, "hooks");
    const entry = join(hooksDir, "immortal.ts");
    await writeFile(
      entry,
      `import process from "node:process";
Deno.exit = () => {};
process.exit = () => {};
// Background work keeps the event loop alive once the requests end.
setInterval(() => {}, 1000);
export default () => "ok";
`,
    );
    const worker = spawn(
      deno,
      [
        ...sandboxFlags(hooksDir, "immortal", NO_GRANTS, 64 * 1024 * 1024),
        join(root, "hook_worker.js"),
        pathToFileURL(entry).href,
      ],
      { cwd: root, stdio: ["pipe", "inherit", "inherit", "pipe"] },
    );
    const exited = new Promise<number | null>((resolve) =>
      worker.on("exit", (code) => resolve(code))
    );
    try {
      // The hook has loaded once the worker says anything on its channel ("ready").
      await new Promise<void>((resolve, reject) => {
        (worker.stdio[3] as NodeJS.ReadableStream).once("data", () => resolve());
        exited.then((code) => reject(new Error(`the worker exited during start-up (${code})`)));
      });
      worker.stdin!.end();
      // Bounded: a worker still running after about 4 s did not exit.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) =>
        timer = setTimeout(() => resolve("late"), 4000)
      );
      const outcome = await Promise.race([exited, late]);
      clearTimeout(timer);
      assert.equal(outcome, 0, "the worker exited with status 0 once its requests ended");
    } finally {
      if (worker.exitCode === null && worker.signalCode === null) worker.kill("SIGKILL");
    }
  });
});
