/**
 * Shared state of the pre-delivery-attempt hook across a fleet: two nodes
 * and one real redis-server; the hook keeps a fleet-wide counter through
 * `shared.increment` (no network grant) and lets exactly N of M attempts
 * through; with Redis down its shared-state call fails, which is a hook
 * failure as the reference has it (a temporary failure with its status text).
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { type RedisServer, startRedis } from "../support/redis_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import {
  cleanup,
  eventually,
  freePort,
  outboundBaseYaml,
  queuedId,
  type Server,
  startServer,
  submitMail,
} from "./harness.ts";

/** Attempts let through by the whole fleet. */
const N = 3;
/** Messages sent, alternating between the nodes. */
const M = 6;

/** The status text of every failure of the hook, from the reference. */
const HOOK_ERROR = "Error in pre_delivery_attempt_hook (see logfile)";

const HOOK = `
export default async function (input, state, shared) {
  const n = await shared.increment("attempts", 1, 3600);
  await shared.set("last", input.recipient, 60);
  if (n <= ${N}) return { action: "normal" };
  return { action: "pause", message: "Over the fleet's limit (" + n + ")" };
}
`;

describe("cluster: a pre-delivery-attempt hook's shared counter across two nodes", () => {
  let redis: RedisServer;
  let dns: TestDnsServer;
  let mx: SmtpReceiver;
  const nodes: Array<{ server: Server; submission: number }> = [];
  before(async () => {
    redis = await startRedis();
    const port = await freePort();
    mx = await SmtpReceiver.start({ host: "127.0.0.27", port });
    dns = await startDnsServer({
      "remote.test": { MX: [{ priority: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { A: ["127.0.0.27"] },
    });
    const users = `alice ${await hashPassword("pw-alice-1")}\n`;
    for (const name of ["node-a", "node-b"]) {
      const submission = await freePort();
      const server = await startServer({
        config: {
          "postern.yaml": [
            // One attempt per message within the test: retries come an hour later.
            ...outboundBaseYaml(submission, dns.address).filter((l) => !/retry_/.test(l)),
            "  retry_initial: 1h",
            "  retry_max: 1h",
            "outbound:",
            `  port: ${port}`,
            "  connect_timeout: 2s",
            "  mta_sts: false",
            "cluster:",
            `  url: ${redis.url}`,
            `  node_name: ${name}`,
            "  timeout: 2s",
            "",
          ].join("\n"),
          "domains/example.test/users": users,
          "hooks/pre-delivery-attempt.ts": HOOK,
        },
      });
      nodes.push({ server, submission });
    }
  });
  after(async () => {
    for (const { server } of nodes) await cleanup(server);
    await mx?.close();
    await dns?.close();
    await redis?.close();
  });

  const login = { user: "alice@example.test", password: "pw-alice-1" };

  /** Submits to node `i`; returns the attempt's delivery log line. */
  async function attempt(i: number, rcpt: string): Promise<string> {
    const { server, submission } = nodes[i % 2]!;
    const id = queuedId(await submitMail(submission, login, login.user, [rcpt]));
    return await server.waitForLog(
      new RegExp(`qid=${id} event=delivery to=<${rcpt}> result=(sent|deferred)`),
    );
  }

  it(`lets exactly ${N} of ${M} attempts through across both nodes`, async () => {
    const results: string[] = [];
    for (let i = 0; i < M; i++) {
      const line = await attempt(i, `r${i}@remote.test`);
      results.push(/result=(\w+)/.exec(line)![1]!);
      if (i >= N) assert.match(line, new RegExp(`error="Over the fleet's limit \\(${i + 1}\\)"`));
    }
    assert.deepEqual(results, [...Array(N).fill("sent"), ...Array(M - N).fill("deferred")]);
    assert.equal(mx.messages.length, N);
    // The keys are the hook's own, under its hook point.
    assert.equal(
      await redis.command("GET postern:hook:pre-delivery-attempt:attempts"),
      `$1\r\n${M}\r\n`,
    );
    assert.match(
      await redis.command("GET postern:hook:pre-delivery-attempt:last"),
      new RegExp(`r${M - 1}@remote\\.test`),
    );
  });

  it("fails the hook's call, as a hook failure, while Redis is down", async () => {
    await redis.kill();
    for (const { server } of nodes) {
      await eventually(() =>
        Promise.resolve(/cluster server unavailable/.test(server.stderr()) ? true : undefined)
      );
    }
    const line = await attempt(0, "down@remote.test");
    assert.match(line, /result=deferred/);
    assert.ok(line.includes(`error="${HOOK_ERROR}"`), line);
    assert.equal(mx.messages.length, N);
  });
});
