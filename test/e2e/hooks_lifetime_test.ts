/**
 * Module-hook workers do not outlive Postern: when Postern dies abruptly
 * (SIGKILL, as the OOM killer or a crash would end it), a worker busy in a
 * loop that never yields, a worker whose hook replaced `Deno.exit` and
 * `process.exit`, and the programs they started under `allow.run`, all
 * end; and a call that times out ends the program its hook started.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { eventually, type RunResult, type Server, startServer, swaks } from "./harness.ts";

/** The hook: each case starts /bin/sleep, says its pid, then does what the sender's local part says. */
const HOOK = `import process from "node:process";
const realExit = Deno.exit;
export default async function (input) {
  const sleeper = new Deno.Command("/bin/sleep", {
    args: ["127"], stdin: "null", stdout: "null", stderr: "null",
  }).spawn();
  sleeper.unref();
  console.log("sleeper " + sleeper.pid);
  switch (input.mailFrom.split("@")[0]) {
    case "spin": {
      // Busy in the call, never yielding (bounded: 60 s).
      const end = Date.now() + 60000;
      while (Date.now() < end) {}
      return { action: "accept" };
    }
    case "immortal": {
      // Deaf to the end of its requests: exits are replaced, and a timer
      // keeps the event loop alive (bounded: 60 s).
      Deno.exit = () => {};
      process.exit = () => {};
      const end = Date.now() + 60000;
      const timer = setInterval(() => {
        if (Date.now() > end) realExit(0);
      }, 1000);
      return { action: "accept" };
    }
    default:
      // Never answers: the call times out.
      return await new Promise(() => {});
  }
}
`;

/** True while `pid` runs (a zombie has ended: only its parent has not collected it yet). */
function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[0] !== "Z";
  } catch {
    return false;
  }
}

/** Waits until `pid` no longer runs, for at most 10 s. */
function ended(pid: number, what: string): Promise<true> {
  return eventually(
    () => Promise.resolve(running(pid) ? undefined : true),
    10_000,
    `${what} to end`,
  );
}

/** The worker's pid and its program's, from the `sleeper` line it printed. */
async function sleeperOf(server: Server): Promise<{ worker: number; sleeper: number }> {
  const line = await eventually(
    () =>
      Promise.resolve(
        server.stderr().split("\n").find((l) =>
          /msg="hook output" hook=post-data pid=\d+ line="sleeper \d+"/.test(l)
        ),
      ),
    15_000,
    "the hook's sleeper line",
  );
  const [, worker, sleeper] = /pid=(\d+) line="sleeper (\d+)"/.exec(line)!;
  return { worker: Number(worker), sleeper: Number(sleeper) };
}

function send(server: Server, from: string): Promise<RunResult> {
  return swaks(server, ["--from", from, "--to", "alice@example.test", "--body", "hello"]);
}

describe("hook workers and Postern's end", { skip: process.platform !== "linux" }, () => {
  /** Processes a test must not leave behind, ended by PID after it. */
  const started: number[] = [];
  afterEach(() => {
    for (const pid of started.splice(0)) {
      if (running(pid)) process.kill(pid, "SIGKILL");
    }
  });

  function start(timeout = "30s"): Promise<Server> {
    return startServer({
      config: {
        "domains/example.test/users": "alice\n",
        "postern.yaml":
          `hooks:\n  post_data:\n    timeout: ${timeout}\n    allow:\n      run: ["/bin/sleep"]\n`,
        "hooks/post-data.ts": HOOK,
      },
    });
  }

  it("a worker busy in a loop, and the program it started, end when Postern is SIGKILLed", async () => {
    const server = await start();
    // Answered only when Postern dies (the connection closes).
    const pending = send(server, "spin@client.test");
    const { worker, sleeper } = await sleeperOf(server);
    started.push(worker, sleeper);
    assert.ok(running(worker) && running(sleeper), "both run before");
    await server.kill();
    await ended(worker, "the busy worker");
    await ended(sleeper, "its /bin/sleep");
    await pending;
  });

  it("a worker whose hook replaced Deno.exit and process.exit ends when Postern is SIGKILLed", async () => {
    const server = await start();
    const sent = await send(server, "immortal@client.test");
    assert.match(sent.stdout, /250 2\.0\.0 Ok: queued as/);
    const { worker, sleeper } = await sleeperOf(server);
    started.push(worker, sleeper);
    assert.ok(running(worker), "the worker runs before");
    await server.kill();
    await ended(worker, "the worker that replaced its exits");
    await ended(sleeper, "its /bin/sleep");
  });

  it("a program the hook started ends when its call times out", async () => {
    const server = await start("2s");
    try {
      const sent = await send(server, "hang@client.test");
      assert.match(sent.stdout, /451 4\.3\.0/);
      const { worker, sleeper } = await sleeperOf(server);
      started.push(worker, sleeper);
      await ended(worker, "the timed-out worker");
      await ended(sleeper, "its /bin/sleep");
    } finally {
      await server.stop();
    }
  });
});
