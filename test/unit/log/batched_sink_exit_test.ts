/**
 * The mail log's lines of the last turn are not lost when the process ends
 * in that same turn: `runtime.onExit` flushes them on `exit()`, at the end
 * of the event loop, and on an uncaught error or rejection (which Deno ends
 * without its "exit" event). Each case runs in a child of the runtime under
 * test, as the daemon would.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { makeTempDir, removeDir } from "../helpers.ts";

const SRC = resolve(fileURLToPath(import.meta.url), "../../../../src");

const PROGRAM = `
import { BatchedSink } from ${JSON.stringify(pathToFileURL(join(SRC, "log/batched_sink.ts")).href)};
import * as runtime from ${JSON.stringify(pathToFileURL(join(SRC, "runtime/mod.ts")).href)};
const sink = new BatchedSink(runtime.writeStdout);
runtime.onExit(() => sink.flush());
sink.write("qid=a event=queued\\n");
sink.write("qid=a event=completed\\n");
const how = runtime.args()[0];
if (how === "exit") runtime.exit(3);
if (how === "throw") throw new Error("boom");
if (how === "reject") Promise.reject(new Error("boom"));
`;

/** The current runtime, running a script. */
const COMMAND = "Deno" in globalThis ? [process.execPath, "run", "-A"] : [process.execPath, "run"];

function runProgram(path: string, how: string): Promise<{ code: number; stdout: string }> {
  return new Promise((done) => {
    execFile(COMMAND[0]!, [...COMMAND.slice(1), path, how], { timeout: 60_000 }, (err, stdout) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      done({ code, stdout: String(stdout) });
    });
  });
}

describe("mail log lines pending when the process ends", () => {
  let dir: string;
  let program: string;
  before(async () => {
    dir = await makeTempDir("postern-batched-exit-");
    program = join(dir, "program.ts");
    await writeFile(program, PROGRAM);
  });
  after(async () => {
    await removeDir(dir);
  });

  const written = "qid=a event=queued\nqid=a event=completed\n";
  for (
    const [how, status] of [
      ["exit", 3],
      ["end", 0],
      ["throw", undefined],
      ["reject", undefined],
    ] as const
  ) {
    it(`are written when the process ends by ${how}`, async () => {
      const result = await runProgram(program, how);
      assert.equal(result.stdout, written);
      if (status === undefined) assert.notEqual(result.code, 0, "still a failure");
      else assert.equal(result.code, status);
    });
  }
});
