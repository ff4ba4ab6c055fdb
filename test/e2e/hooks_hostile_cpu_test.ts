/**
 * A hostile module hook against Postern's share of the CPUs (issue 15,
 * review): hooks that compute in a loop where no call timeout watches
 * them (between calls, in every worker at once) must not starve Postern's
 * own sessions. Workers run at a lower priority (nice 10) than Postern;
 * with four workers spinning on this 2-core machine, a session of 500 RCPT
 * commands is served while they spin (how fast is for the benchmarks to
 * say, not for a test).
 */

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { cleanup, eventually, rawSession, type Server, startServer, tempDir } from "./harness.ts";

/**
 * Every worker spins from the moment it has loaded until the test creates
 * `release` (a file its grants let it read), without any call: nothing in
 * the hook protocol can stop it, only its priority helps. It says when it
 * starts and when it stops. The spin yields to the event loop every 50 ms
 * of computing, so that the worker's own protocol (its "ready") gets out,
 * and so that it ends when Postern closes its input.
 */
const spinHook = (release: string) => `
const release = ${JSON.stringify(release)};
function released() {
  try {
    Deno.statSync(release);
    return true;
  } catch {
    return false;
  }
}
async function spin() {
  console.error("SPIN-START pid=" + Deno.pid);
  while (!released()) {
    const end = Date.now() + 50;
    while (Date.now() < end) {}
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  console.error("SPIN-END pid=" + Deno.pid);
}
setTimeout(spin, 0);
export default () => undefined;
`;

/** The fields of /proc/PID/stat after the command name (field 3 is index 0). */
async function stat(pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8");
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Sends `count` RCPT commands (in transactions of 50) on one session; all must get 250. */
async function rcptSession(server: Server, count: number): Promise<void> {
  const session = await rawSession(server);
  try {
    assert.match(await session.read(), /^220 /);
    assert.match(await session.send("EHLO client.test"), /^250 /);
    let inTransaction = 0;
    for (let i = 0; i < count; i++) {
      if (inTransaction === 0) {
        assert.match(await session.send("MAIL FROM:<carol@client.test>"), /^250 /);
      }
      assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
      if (++inTransaction === 50) {
        assert.match(await session.send("RSET"), /^250 /);
        inTransaction = 0;
      }
    }
    assert.match(await session.send("QUIT"), /^221 /);
  } finally {
    session.close();
  }
}

describe("hostile hook: CPU", () => {
  let server: Server;
  let release: string;
  /** The pids in the workers' SPIN-START or SPIN-END lines. */
  const said = (what: "SPIN-START" | "SPIN-END") =>
    [...server.stderr().matchAll(new RegExp(`line="${what} pid=(\\d+)"`, "g"))].map((m) =>
      Number(m[1])
    );

  before(async () => {
    release = join(await tempDir("postern-spin-"), "release");
    server = await startServer({
      config: {
        "domains/example.test/users": "alice\n",
        "postern.yaml": [
          "hooks:",
          "  post_data:",
          "    workers: 4",
          "    allow:",
          `      read: [${JSON.stringify(release)}]`,
          "",
        ].join("\n"),
        "hooks/post-data.ts": spinHook(release),
      },
    });
  });
  after(async () => {
    // Also when a test failed: the workers stop spinning.
    if (release) await writeFile(release, "").catch(() => {});
    await cleanup(server);
  });

  it("runs workers below Postern's priority, and serves sessions while four of them spin", async () => {
    const postern = server.child.pid!;
    const ownNice = Number((await stat(postern))[16]);
    const workers = await eventually(
      () => {
        const pids = said("SPIN-START");
        return Promise.resolve(pids.length >= 4 ? pids : undefined);
      },
      30_000,
      "the four workers' SPIN-START lines",
    );
    assert.equal(new Set(workers).size, 4, workers.join(" "));
    for (const pid of workers) {
      const fields = await stat(pid);
      assert.equal(Number(fields[1]), postern, `worker ${pid} is Postern's child`);
      assert.equal(
        Number(fields[16]),
        Math.min(19, ownNice + 10),
        `the nice value of worker ${pid}`,
      );
    }

    await rcptSession(server, 500);

    // The workers spun all along: they started before the session, and
    // none has stopped (only the release file stops them) or died.
    assert.deepEqual(said("SPIN-END"), [], "a worker stopped spinning before the release");
    for (const pid of workers) assert.ok(alive(pid), `worker ${pid} is gone`);

    await writeFile(release, "");
    const ended = await eventually(
      () => {
        const pids = said("SPIN-END");
        return Promise.resolve(pids.length >= 4 ? pids : undefined);
      },
      30_000,
      "the four workers to stop spinning once released",
    );
    assert.deepEqual([...ended].sort(), [...workers].sort());
  });
});
