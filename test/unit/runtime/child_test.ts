/**
 * startChild: a child runs in a process group of its own; ending it ends
 * what it started; and the group ends when the process that started it
 * dies, however it dies, even if the child never reads its input again.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { type Child, startChild } from "../../../src/runtime/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

const ENV = { PATH: "/usr/bin:/bin" };

/** Fields of /proc/PID/stat after the command name; undefined once the process is gone. */
function stat(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  } catch {
    return undefined;
  }
}

/** True while `pid` runs (a zombie has ended: only its parent has not collected it yet). */
function running(pid: number): boolean {
  const fields = stat(pid);
  return fields !== undefined && fields[0] !== "Z";
}

/** Waits until `pid` no longer runs; fails after about 4 s (within bun test's 5 s per test). */
async function ended(pid: number, what: string): Promise<void> {
  for (let i = 0; i < 200 && running(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!running(pid), `${what} (pid ${pid}) still runs`);
}

/** Ends what a test left behind, by PID. */
function killLeftovers(pids: number[]): void {
  for (const pid of pids) {
    if (!running(pid)) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
}

/** The whole numbers the child prints on its standard output, once `count` have come. */
function printed(child: Child, count: number): Promise<number[]> {
  return new Promise((resolve) => {
    let text = "";
    child.onStdout((chunk) => {
      text += new TextDecoder().decode(chunk);
      const numbers = text.split("\n").slice(0, -1).map(Number);
      if (numbers.length >= count) resolve(numbers.slice(0, count));
    });
  });
}

function exitOf(child: Child): Promise<void> {
  return new Promise((resolve) => child.onExit(() => resolve()));
}

describe("startChild", { skip: process.platform !== "linux" }, () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("postern-child-");
  });
  after(() => removeDir(dir));

  it("startChild() runs the child as the leader of a process group of its own", async () => {
    const child = startChild({ argv: ["/bin/sh", "-c", "echo $$; read line"], env: ENV });
    try {
      const [pid] = await printed(child, 1);
      assert.equal(pid, child.pid, "the program has the pid Postern knows");
      const fields = stat(child.pid!);
      assert.equal(Number(fields?.[2]), child.pid, "its process group is its own");
    } finally {
      child.kill();
      await exitOf(child);
    }
  });

  it("kill() ends the child and what it started", async () => {
    const child = startChild({
      argv: ["/bin/sh", "-c", "/bin/sleep 127 & echo $!; wait"],
      env: ENV,
    });
    const [sleeper] = await printed(child, 1);
    try {
      child.kill();
      await exitOf(child);
      await ended(sleeper!, "the program the child started");
    } finally {
      killLeftovers([sleeper!]);
    }
  });

  it("kill() ends what the child started in a session of its own, outside its group", async () => {
    // A hook's program started with Deno's `detached: true` (setsid) left
    // the group, and outlived the worker and Postern.
    const child = startChild({
      argv: ["/bin/sh", "-c", "setsid /bin/sh -c '/bin/sleep 131 & echo $!; wait' & wait"],
      env: ENV,
    });
    const [sleeper] = await printed(child, 1);
    try {
      assert.notEqual(
        stat(sleeper!)?.[3],
        String(child.pid),
        "the program is in a session of its own",
      );
      child.kill();
      await exitOf(child);
      await ended(sleeper!, "the program the child started in a session of its own");
    } finally {
      killLeftovers([sleeper!]);
    }
  });

  it("a child that exits on its own leaves nothing of its group running", async () => {
    const child = startChild({
      argv: ["/bin/sh", "-c", "/bin/sleep 127 >/dev/null & echo $!; read line"],
      env: ENV,
    });
    const [sleeper] = await printed(child, 1);
    try {
      child.write(new TextEncoder().encode("bye\n"));
      await exitOf(child);
      await ended(sleeper!, "the program the child started");
    } finally {
      killLeftovers([sleeper!]);
    }
  });

  it("the child and what it started end when their parent is SIGKILLed, though the child ignores its input", async () => {
    // A stand-in for Postern, in the runtime running these tests: it starts
    // a child that never reads its input and starts a program, says their
    // pids, and waits.
    const script = join(dir, "parent.ts");
    const child = pathToFileURL(join(import.meta.dirname!, "../../../src/runtime/child.ts")).href;
    await writeFile(
      script,
      `import { startChild } from ${JSON.stringify(child)};
const c = startChild({
  argv: ["/bin/sh", "-c", "trap '' HUP TERM; /bin/sleep 127 >/dev/null & echo $!; exec /bin/sleep 128"],
  env: { PATH: "/usr/bin:/bin" },
});
c.onStdout((chunk) => process.stdout.write(c.pid + " " + new TextDecoder().decode(chunk)));
setInterval(() => {}, 1000);
`,
    );
    const argv = "Deno" in globalThis ? ["run", "-A", script] : [script];
    const parent = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
    const pids = await new Promise<number[]>((resolve, reject) => {
      let text = "";
      parent.stdout!.on("data", (chunk: Uint8Array) => {
        text += new TextDecoder().decode(chunk);
        if (text.includes("\n")) resolve(text.trim().split(/\s+/).map(Number));
      });
      parent.on("exit", (code) => reject(new Error(`the parent exited (${code})`)));
    });
    const [worker, sleeper] = pids;
    try {
      assert.ok(running(worker!) && running(sleeper!), "both run before");
      const gone = new Promise((resolve) => parent.on("exit", resolve));
      process.kill(parent.pid!, "SIGKILL");
      await gone;
      await ended(worker!, "the child");
      await ended(sleeper!, "the program the child started");
    } finally {
      killLeftovers([worker!, sleeper!]);
    }
  });
});
