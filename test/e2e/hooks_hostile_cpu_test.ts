/**
 * A hostile module hook against Postern's share of the CPUs (issue 15,
 * review): hooks that compute in a loop where no call timeout watches
 * them (between calls, in every worker at once) must not starve Postern's
 * own sessions. Workers run at a lower priority (nice 10) than Postern, so
 * RCPT round trips stay fast while four workers spin on this 2-core
 * machine (measured under load: p99 of 12 to 97 ms at an equal priority,
 * 2.5 to 3.5 ms at nice 10).
 */

import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { cleanup, rawSession, type Server, startServer } from "./harness.ts";

/**
 * Every worker spins from 2 s after it loads until 20 s after, without any
 * call: nothing in the hook protocol can stop it, only its priority helps.
 */
const SPIN_HOOK = `
setTimeout(() => {
  const end = Date.now() + 18000;
  while (Date.now() < end) {}
}, 2000);
export default () => undefined;
`;

/** The fields of /proc/PID/stat after the command name (field 3 is index 0). */
async function stat(pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8");
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** The processes whose parent is `parent`. */
async function childrenOf(parent: number): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const fields = await stat(Number(name)).catch(() => undefined);
    if (fields && Number(fields[1]) === parent) found.push(Number(name));
  }
  return found;
}

/** CPU time (user + system, in clock ticks) of `pid`. */
async function cpuTicks(pid: number): Promise<number> {
  const fields = await stat(pid);
  return Number(fields[11]) + Number(fields[12]);
}

/** Round trips of `count` RCPT commands, sorted, in milliseconds. */
async function rcptRoundTrips(server: Server, count: number): Promise<number[]> {
  const session = await rawSession(server);
  try {
    assert.match(await session.read(), /^220 /);
    assert.match(await session.send("EHLO client.test"), /^250 /);
    const times: number[] = [];
    let inTransaction = 0;
    for (let i = -5; i < count; i++) {
      if (inTransaction === 0) {
        assert.match(await session.send("MAIL FROM:<carol@client.test>"), /^250 /);
      }
      const started = performance.now();
      assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
      if (i >= 0) times.push(performance.now() - started);
      if (++inTransaction === 50) {
        assert.match(await session.send("RSET"), /^250 /);
        inTransaction = 0;
      }
    }
    return times.sort((a, b) => a - b);
  } finally {
    session.close();
  }
}

describe("hostile hook: CPU", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "domains/example.test/users": "alice\n",
        "postern.yaml": "hooks:\n  post_data:\n    workers: 4\n",
        "hooks/post-data.ts": SPIN_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  it("runs workers below Postern's priority, so four spinning workers leave RCPT fast", async () => {
    const postern = server.child.pid!;
    const ownNice = Number((await stat(postern))[16]);
    // The four workers (deno, under the sh that became it), once all have started.
    let workers: number[] = [];
    for (let i = 0; i < 200 && workers.length < 4; i++) {
      workers = await childrenOf(postern);
      if (workers.length < 4) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(workers.length, 4, `workers of ${postern}: ${workers.join(" ")}`);
    for (const pid of workers) {
      assert.equal(
        Number((await stat(pid))[16]),
        Math.min(19, ownNice + 10),
        `the nice value of worker ${pid}`,
      );
    }
    // Wait until they spin: their CPU time grows by a fifth of a second in half a second.
    let spinning = false;
    for (let i = 0; i < 40 && !spinning; i++) {
      const before = await Promise.all(workers.map(cpuTicks));
      await new Promise((r) => setTimeout(r, 500));
      const grown = (await Promise.all(workers.map(cpuTicks))).map((t, j) => t - before[j]!);
      spinning = grown.reduce((a, b) => a + b, 0) >= 20;
    }
    assert.ok(spinning, "the workers did not spin");
    const times = await rcptRoundTrips(server, 500);
    const p99 = times[Math.ceil(times.length * 0.99) - 1]!;
    console.log(
      `four spinning workers: RCPT p50 ${times[249]!.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`,
    );
    assert.ok(p99 < 50, `RCPT p99 ${p99.toFixed(1)} ms while the workers spun`);
  });
});
