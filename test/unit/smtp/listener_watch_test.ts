/**
 * The listener watch: its probes are dropped before smtp-server sees them,
 * a listener that does not accept them listens again, and the decisions
 * (strikes, second looks, the wait after restarts for no answer) follow
 * the probes' outcomes. Runs on both runtimes with the watch forced on.
 */

import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { describe, it } from "node:test";
import {
  ListenerWatch,
  type ListenerWatchOptions,
  MAX_WATCH_INTERVAL_MS,
  probeHost,
  type ProbeOutcome,
} from "../../../src/smtp/listener_watch.ts";
import { PosternSmtpServer } from "../../../src/smtp/server_class.ts";

/** Listens on a free loopback port; resolves with the port. */
function listen(server: Pick<Server, "listen" | "once" | "address">): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
}

/** A watch whose probes give `outcomes` in turn, recording what it does. */
function scripted(outcomes: ProbeOutcome[], more: Partial<ListenerWatchOptions> = {}) {
  const restarts: string[] = [];
  const errors: string[] = [];
  let probes = 0;
  const watch = new ListenerWatch({
    host: "127.0.0.1",
    port: 1,
    listening: () => true,
    listenAgain: () => Promise.resolve(),
    onRestart: (reason) => restarts.push(reason),
    onError: (error) => errors.push(error),
    intervalMs: 1_000,
    probe: () => {
      probes++;
      return Promise.resolve(outcomes.shift() ?? "accepted");
    },
    ...more,
  });
  return { watch, restarts, errors, probes: () => probes };
}

/** A check with the watch running (stop() would end it early). */
async function checkRunning(watch: ListenerWatch): Promise<void> {
  watch.start();
  try {
    await watch.check();
  } finally {
    watch.stop();
  }
}

describe("ListenerWatch", () => {
  it("a probe is accepted and dropped before smtp-server sees it; clients get their greeting", async () => {
    let sessions = 0;
    const smtp = new PosternSmtpServer({
      greetingDelayMs: 0,
      commandTimeoutMs: 0,
      minDataRate: 1,
      hardErrorLimit: 0,
      logger: false,
      disabledCommands: ["STARTTLS", "AUTH"],
      authOptional: true,
      onConnect: (_session, cb) => {
        sessions++;
        cb();
      },
    });
    const port = await listen(smtp.server);
    const restarts: string[] = [];
    const watch = new ListenerWatch({
      host: "127.0.0.1",
      port,
      listening: () => smtp.server.listening,
      listenAgain: () => Promise.reject(new Error("not expected")),
      onRestart: (reason) => restarts.push(reason),
      onError: (error) => restarts.push(error),
      // Generous: on a loaded machine a late accept must not look like a stopped listener.
      timeoutMs: 10_000,
    });
    smtp.probes = watch;
    try {
      for (let i = 0; i < 3; i++) await checkRunning(watch);
      assert.deepEqual(restarts, []);
      assert.equal(sessions, 0, "a probe is no session");
      const client = connect(port, "127.0.0.1");
      const greeting = await new Promise<string>((resolve, reject) => {
        client.once("data", (chunk) => resolve(String(chunk)));
        client.once("error", reject);
      });
      client.destroy();
      assert.match(greeting, /^220 /);
      assert.equal(sessions, 1);
    } finally {
      await new Promise<void>((resolve) => smtp.close(() => resolve()));
    }
  });

  it("a listener that does not accept its probes listens again on the same port", async () => {
    // Accepts, but never hands a socket to claim(): to the watch, as a
    // stopped listener looks, whose queue holds the probe.
    const held: Socket[] = [];
    const peers: Array<{ remoteAddress?: string; remotePort?: number }> = [];
    const server = createServer((socket) => {
      held.push(socket);
      peers.push({ remoteAddress: socket.remoteAddress!, remotePort: socket.remotePort! });
    });
    const port = await listen(server);
    const restarts: string[] = [];
    const watch = new ListenerWatch({
      host: "127.0.0.1",
      port,
      listening: () => server.listening,
      listenAgain: () =>
        new Promise<void>((resolve, reject) => {
          server.close();
          server.once("error", reject);
          server.listen(port, "127.0.0.1", () => resolve());
        }),
      onRestart: (reason) => restarts.push(reason),
      onError: (error) => restarts.push(`error: ${error}`),
      timeoutMs: 300,
    });
    try {
      await checkRunning(watch);
      assert.deepEqual(restarts, ["not_accepted"]);
      assert.ok(server.listening);
      const address = server.address();
      assert.equal(typeof address === "object" && address ? address.port : 0, port);
      // Both probes (a strike, then the second look) reached the listener,
      // and are still known as probes after they ended.
      assert.equal(peers.length, 2);
      for (const peer of peers) assert.equal(watch.claim(peer), true);
      const client = connect(port, "127.0.0.1");
      await new Promise((resolve) => client.once("connect", resolve));
      assert.equal(
        watch.claim({ remoteAddress: "127.0.0.1", remotePort: client.localPort }),
        false,
      );
      client.destroy();
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("check() listens again after two strikes in a row, not after one", async () => {
    const once = scripted(["not_accepted", "accepted"]);
    await checkRunning(once.watch);
    assert.equal(once.probes(), 2);
    assert.deepEqual(once.restarts, []);

    const twice = scripted(["not_accepted", "no_answer"]);
    await checkRunning(twice.watch);
    assert.deepEqual(twice.restarts, ["no_answer"]);

    const stuck = scripted(["no_answer", "not_accepted"]);
    await checkRunning(stuck.watch);
    assert.deepEqual(stuck.restarts, ["not_accepted"]);
  });

  it("check() takes a probe that fails at once (EMFILE) for no strike", async () => {
    const { watch, restarts, probes } = scripted(["unavailable", "unavailable", "accepted"]);
    await checkRunning(watch);
    await checkRunning(watch);
    await checkRunning(watch);
    assert.equal(probes(), 3);
    assert.deepEqual(restarts, []);
  });

  it("check() listens again at once when the listener is not listening", async () => {
    let listening = false;
    const { watch, restarts, probes } = scripted([], {
      listening: () => listening,
      listenAgain: () => {
        listening = true;
        return Promise.resolve();
      },
    });
    await checkRunning(watch);
    assert.deepEqual(restarts, ["not_listening"]);
    assert.equal(probes(), 0);
    await checkRunning(watch);
    assert.deepEqual(restarts, ["not_listening"]);
  });

  it("check() reports a failure to listen again, and tries again at the next check", async () => {
    let attempts = 0;
    const { watch, restarts, errors } = scripted(
      ["not_accepted", "not_accepted", "not_accepted", "not_accepted"],
      {
        listenAgain: () => {
          attempts++;
          return attempts === 1
            ? Promise.reject(new Error("listen EADDRINUSE: address already in use"))
            : Promise.resolve();
        },
      },
    );
    await checkRunning(watch);
    assert.deepEqual(errors, ["listen EADDRINUSE: address already in use"]);
    assert.deepEqual(restarts, []);
    await checkRunning(watch);
    assert.deepEqual(restarts, ["not_accepted"]);
  });

  it("restarts for no answer, one after the other, double the wait up to a bound", async () => {
    const outcomes: ProbeOutcome[] = [];
    const { watch, restarts } = scripted(outcomes);
    assert.equal(watch.nextIntervalMs, 1_000);
    for (const expected of [2_000, 4_000, 8_000]) {
      outcomes.push("no_answer", "no_answer");
      await checkRunning(watch);
      assert.equal(watch.nextIntervalMs, expected);
    }
    for (let i = 0; i < 12; i++) {
      outcomes.push("no_answer", "no_answer");
      await checkRunning(watch);
    }
    assert.equal(watch.nextIntervalMs, MAX_WATCH_INTERVAL_MS);
    assert.equal(restarts.length, 15);
    // Anything else seen (out of descriptors, accepted, not accepted) ends the doubling.
    outcomes.push("unavailable");
    await checkRunning(watch);
    assert.equal(watch.nextIntervalMs, 1_000);
    outcomes.push("no_answer", "no_answer", "not_accepted", "not_accepted");
    await checkRunning(watch);
    await checkRunning(watch);
    assert.equal(watch.nextIntervalMs, 1_000);
  });

  it("a stopped watch neither probes on its timer nor listens again", async () => {
    let probes = 0;
    let restarts = 0;
    const watch = new ListenerWatch({
      host: "127.0.0.1",
      port: 1,
      listening: () => true,
      listenAgain: () => Promise.resolve(),
      onRestart: () => restarts++,
      onError: () => {},
      intervalMs: 5,
      probe: () => {
        probes++;
        // Stopped while probing: the strikes lead nowhere.
        if (probes === 3) watch.stop();
        return Promise.resolve("not_accepted");
      },
    });
    watch.start();
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (probes >= 3) {
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    // Probes 1 and 2 were one check (and a restart); 3 was the next, stopped.
    assert.equal(restarts, 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(probes, 3);
    assert.equal(restarts, 1);
  });

  it("a check that throws is reported, and the checks go on", async () => {
    const errors: string[] = [];
    let probes = 0;
    const watch = new ListenerWatch({
      host: "127.0.0.1",
      port: 1,
      listening: () => true,
      listenAgain: () => Promise.resolve(),
      onRestart: () => {},
      onError: (error) => errors.push(error),
      intervalMs: 5,
      probe: () => {
        probes++;
        return probes === 1
          ? Promise.reject(new Error("probe broke"))
          : Promise.resolve("accepted");
      },
    });
    watch.start();
    try {
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (probes >= 2) {
            clearInterval(poll);
            resolve();
          }
        }, 5);
      });
    } finally {
      watch.stop();
    }
    assert.deepEqual(errors, ["probe broke"]);
  });

  it("probeHost() reaches a wildcard listener on loopback", () => {
    assert.equal(probeHost("0.0.0.0"), "127.0.0.1");
    assert.equal(probeHost("::"), "::1");
    assert.equal(probeHost("192.0.2.25"), "192.0.2.25");
    assert.equal(probeHost("::1"), "::1");
  });
});
