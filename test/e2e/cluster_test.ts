/**
 * A fleet: two Postern nodes sharing one real redis-server (started by the
 * test on a unix socket). A client spreading its messages and connections
 * over both is limited at the configured total; with Redis killed both
 * nodes keep accepting under their local limits, and return to shared
 * counts when it is back; `/cluster` lists the live nodes.
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  posternCommand,
  rawSession,
  ROOT,
  run,
  type Server,
  startServer,
} from "./harness.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";

/** Messages per client address per hour, for the whole fleet. */
const LIMIT = 4;

function nodeConfig(redis: RedisServer, name: string): Record<string, string> {
  return {
    "postern.yaml": [
      // Loopback is trusted by default, and trusted clients are not limited.
      "auth:",
      "  trusted_networks: []",
      "  spf:",
      "    enabled: false",
      "  verify: false",
      "rate_limits:",
      `  messages_per_ip_per_hour: ${LIMIT}`,
      "  connections_per_ip_per_minute: 0",
      "cluster:",
      `  url: ${redis.url}`,
      `  node_name: ${name}`,
      // Generous: a busy test machine must not fall back by accident.
      "  timeout: 2s",
      "  heartbeat: 300ms",
      "",
    ].join("\n"),
    "domains/example.test/users": "alice\n",
  };
}

async function adminOf(server: Server): Promise<{ base: string; token: string }> {
  const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
  const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
  return { base: `http://${state.address}`, token };
}

async function get(server: Server, path: string): Promise<{ status: number; text: string }> {
  const { base, token } = await adminOf(server);
  const response = await fetch(base + path, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, text: await response.text() };
}

async function clusterState(server: Server): Promise<string> {
  return JSON.parse((await get(server, "/status")).text).cluster.state;
}

/** Waits until the node counts through the server (or locally). */
async function waitForState(server: Server, state: "shared" | "local"): Promise<void> {
  await eventually(
    async () => await clusterState(server) === state ? true : undefined,
    20_000,
    `cluster state ${state}`,
  );
}

/** One MAIL FROM on a fresh session of `server`: the reply's code. */
async function mailFrom(server: Server): Promise<string> {
  const s = await rawSession(server);
  try {
    assert.match(await s.read(), /^220 /);
    assert.match(await s.send("EHLO client.test"), /^250 /);
    return (await s.send("MAIL FROM:<sender@client.test>")).slice(0, 9);
  } finally {
    s.close();
  }
}

describe("cluster: two nodes and one redis-server", () => {
  let redis: RedisServer;
  let a: Server;
  let b: Server;
  before(async () => {
    redis = await startRedis();
    a = await startServer({ config: nodeConfig(redis, "node-a") });
    b = await startServer({ config: nodeConfig(redis, "node-b") });
    await waitForState(a, "shared");
    await waitForState(b, "shared");
  });
  after(async () => {
    await cleanup(a);
    await cleanup(b);
    await redis?.close();
  });

  it("limits a client alternating between the nodes at the configured total", async () => {
    const answers: string[] = [];
    for (let i = 0; i < LIMIT + 2; i++) answers.push(await mailFrom(i % 2 === 0 ? a : b));
    // Each node alone would accept LIMIT; together they accept LIMIT in all.
    assert.deepEqual(answers, [
      ...Array(LIMIT).fill("250 2.1.0"),
      "451 4.7.1",
      "451 4.7.1",
    ]);
    await a.waitForLog(/event=rejected.*reason=message_rate/);
    await b.waitForLog(/event=rejected.*reason=message_rate/);
  });

  it("lists both nodes in /cluster and postern status --cluster", async () => {
    const view = await eventually(
      async () => {
        const body = JSON.parse((await get(a, "/cluster")).text);
        return body.nodes?.length === 2 ? body : undefined;
      },
      10_000,
      "both nodes in /cluster",
    );
    assert.equal(view.self.node, "node-a");
    assert.equal(view.self.state, "shared");
    assert.deepEqual(view.nodes.map((n: { name: string }) => n.name), ["node-a", "node-b"]);
    for (const node of view.nodes) {
      assert.equal(node.state, "shared");
      assert.equal(typeof node.version, "string");
      assert.equal(node.queue_size, 0);
      assert.equal(node.policy_epoch, 1);
    }
    const [cmd, ...args] = posternCommand([
      "status",
      "--cluster",
      "--config",
      b.configDir,
      "--data",
      b.dataDir,
    ]);
    const cli = await run(cmd!, args);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^node node-b: shared counts/);
    assert.match(cli.stdout, /^node-a\s/m);
    assert.match(cli.stdout, /^node-b\s/m);
  });

  it("falls back to local limits while Redis is down, and back to shared counts after", async () => {
    // Each node counted its share locally too: LIMIT / 2 each so far.
    await redis.kill();
    await waitForState(a, "local");
    await waitForState(b, "local");
    // Mail keeps flowing: each node now allows its own LIMIT.
    for (const node of [a, b]) {
      const answers = [];
      for (let i = 0; i < LIMIT / 2 + 1; i++) answers.push(await mailFrom(node));
      assert.deepEqual(answers, [...Array(LIMIT / 2).fill("250 2.1.0"), "451 4.7.1"]);
    }
    assert.match(a.stderr(), /cluster server unavailable; counting locally/);
    const metrics = (await get(a, "/metrics")).text;
    assert.match(metrics, /^postern_cluster_shared 0$/m);
    assert.match(metrics, /^postern_cluster_local_checks_total [1-9]/m);
    assert.match(metrics, /^postern_cluster_state_changes_total\{state="local"\} 1$/m);
    const cluster = await get(a, "/cluster");
    assert.equal(cluster.status, 503);
    assert.equal(JSON.parse(cluster.text).self.state, "local");

    // A new, empty Redis: the fleet's counts start again from zero, where
    // the nodes' local counts are full.
    await redis.start();
    await waitForState(a, "shared");
    await waitForState(b, "shared");
    assert.match(a.stderr(), /cluster server answers; counting across the fleet/);
    const answers: string[] = [];
    for (let i = 0; i < LIMIT + 1; i++) answers.push(await mailFrom(i % 2 === 0 ? b : a));
    assert.deepEqual(answers, [...Array(LIMIT).fill("250 2.1.0"), "451 4.7.1"]);
    assert.match((await get(a, "/metrics")).text, /^postern_cluster_shared 1$/m);
  });

  it("drops a node from /cluster once it stops", async () => {
    await eventually(
      async () => {
        const body = JSON.parse((await get(a, "/cluster")).text);
        return body.nodes?.length === 2 ? true : undefined;
      },
      10_000,
      "both nodes back in /cluster",
    );
    await b.stop();
    const names = await eventually(
      async () => {
        const body = JSON.parse((await get(a, "/cluster")).text);
        return body.nodes?.length === 1
          ? body.nodes.map((n: { name: string }) => n.name)
          : undefined;
      },
      10_000,
      "node-b gone from /cluster",
    );
    assert.deepEqual(names, ["node-a"]);
  });
});

describe("cluster: the README's example", () => {
  let redis: RedisServer;
  let node: Server;
  after(async () => {
    await cleanup(node);
    await redis?.close();
  });

  it("runs a node against a server with a password, from password_file", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Running several nodes"));
    const yaml = /On every node[^]*?```yaml\n([^]*?)```/.exec(section)?.[1];
    assert.ok(yaml, "the README has the example");
    assert.match(yaml, /password_file: valkey\.password/);
    const password = "a long random text 0123456789";
    redis = await startRedis({ password });
    node = await startServer({
      config: {
        // The example as it is, with this test's server instead of 10.0.0.5.
        "postern.yaml": yaml.replace(/url: .*/, `url: ${redis.url}`),
        "valkey.password": `${password}\n`,
      },
    });
    await waitForState(node, "shared");
    const status = JSON.parse((await get(node, "/status")).text);
    assert.equal(status.cluster.node, "mx1");
    assert.equal(status.cluster.last_error, null);
  });
});
