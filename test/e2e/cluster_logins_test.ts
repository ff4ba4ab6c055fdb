/**
 * Failed logins across a fleet: two Postern nodes sharing one real
 * redis-server (started by the test on a unix socket). A client that sends
 * wrong passwords to both nodes' submission listeners at the same moment
 * gets at most `failed_logins_per_ip_per_hour` password checks (535) from
 * the whole fleet, and 454 for the rest; before, each node let that many
 * through, each counting only its own attempts in flight.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { cleanup, eventually, freePort, type Server, startServer } from "./harness.ts";
import { LineClient } from "../support/smtp_lines.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";

/** Failed logins per client address per hour, for the whole fleet. */
const LIMIT = 3;
/** Guesses sent at the same moment, half to each node. */
const GUESSES = 12;
const PASSWORD = "carol's password";

function nodeConfig(redis: RedisServer, name: string, submission: number, hash: string) {
  return {
    "postern.yaml": [
      "submission:",
      `  listen: ["127.0.0.1:${submission}"]`,
      "auth:",
      "  spf:",
      "    enabled: false",
      "  verify: false",
      "rate_limits:",
      `  failed_logins_per_ip_per_hour: ${LIMIT}`,
      "  connections_per_ip_per_minute: 0",
      "cluster:",
      `  url: ${redis.url}`,
      `  node_name: ${name}`,
      // Generous: a busy test machine must not fall back by accident.
      "  timeout: 2s",
      "  heartbeat: 300ms",
      "",
    ].join("\n"),
    "domains/example.test/users": `carol ${hash}\n`,
  };
}

/** An AUTH PLAIN response for carol. */
function plain(password: string): string {
  return btoa(`\0carol@example.test\0${password}`);
}

/** A session on `port`, encrypted (AUTH is offered only then), ready for AUTH. */
async function secured(port: number): Promise<LineClient> {
  const client = await LineClient.open("127.0.0.1", port);
  assert.match((await client.waitFor(/^220 /)) ?? "", /^220 /);
  assert.match(await client.command("EHLO client.test"), /^250 /);
  assert.match(await client.command("STARTTLS"), /^220 /);
  await client.startTls();
  assert.match(await client.command("EHLO client.test"), /^250[ -]/);
  return client;
}

/** One AUTH PLAIN on a fresh session: the reply's code. */
async function login(port: number, password: string): Promise<string> {
  const client = await secured(port);
  try {
    return (await client.command(`AUTH PLAIN ${plain(password)}`)).slice(0, 3);
  } finally {
    client.close();
  }
}

/** True once the node has said that it counts across the fleet (its log, stderr). */
function countsShared(server: Server): true | undefined {
  return /cluster server answers; counting across the fleet/.test(server.stderr()) || undefined;
}

describe("cluster: failed logins across two nodes", () => {
  let redis: RedisServer;
  let a: Server;
  let b: Server;
  let portA: number;
  let portB: number;
  before(async () => {
    redis = await startRedis();
    const hash = await hashPassword(PASSWORD);
    portA = await freePort();
    portB = await freePort();
    a = await startServer({ config: nodeConfig(redis, "node-a", portA, hash) });
    b = await startServer({ config: nodeConfig(redis, "node-b", portB, hash) });
    for (const node of [a, b]) {
      await eventually(
        () => Promise.resolve(countsShared(node)),
        20_000,
        "the node counting across the fleet",
      );
    }
  });
  after(async () => {
    await cleanup(a);
    await cleanup(b);
    await redis?.close();
  });

  it("lets the right password in on both nodes, under the limit", async () => {
    // Each login's place is given back: a second round fits as well.
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(
        await Promise.all([login(portA, PASSWORD), login(portB, PASSWORD)]),
        ["235", "235"],
      );
    }
  });

  it("checks at most the fleet's limit of guesses sent to both nodes at once; 454 for the rest", async () => {
    // Every session is ready first, so that the guesses arrive together.
    const sessions = await Promise.all(
      Array.from({ length: GUESSES }, (_, i) => secured(i % 2 ? portB : portA)),
    );
    const codes = await Promise.all(
      sessions.map(async (client, i) => {
        try {
          return (await client.command(`AUTH PLAIN ${plain(`guess ${i}`)}`)).slice(0, 3);
        } finally {
          client.close();
        }
      }),
    );
    const checked = codes.filter((c) => c === "535").length;
    // Before, each node checked LIMIT of them: 2 × LIMIT in all.
    assert.ok(checked <= LIMIT, `${checked} password checks: ${codes.join(" ")}`);
    assert.equal(codes.filter((c) => c === "454").length, GUESSES - checked, codes.join(" "));
    // The client is locked out on both nodes, the right password too.
    assert.deepEqual(
      await Promise.all([login(portA, PASSWORD), login(portB, PASSWORD)]),
      ["454", "454"],
    );
    const refused = [...a.mailLog, ...b.mailLog].filter((l) =>
      /event=login .*reason=bad_credentials/.test(l)
    );
    assert.ok(refused.length <= LIMIT, refused.join("\n"));
  });
});
