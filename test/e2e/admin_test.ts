/**
 * The admin API over real HTTP against the running server: the token,
 * validation errors, status, reload, Prometheus metrics checked against the
 * traffic sent, and every queue operation observed in the spool.
 */

import assert from "node:assert/strict";
import { chmod, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
// @deno-types="../support/parse_prometheus.d.ts"
import parsePrometheus from "parse-prometheus-text-format";
import {
  cleanup,
  eventually,
  posternCommand,
  run,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

/** The admin API of a running server: its address and token, from the data directory. */
async function adminOf(server: Server): Promise<{ base: string; token: string }> {
  const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
  const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
  return { base: `http://${state.address}`, token };
}

describe("admin API", () => {
  let server: Server;
  let base: string;
  let token: string;
  const call = (path: string, init: RequestInit & { auth?: string | false } = {}) => {
    const headers = new Headers(init.headers);
    if (init.auth !== false) headers.set("authorization", `Bearer ${init.auth ?? token}`);
    return fetch(`${base}${path}`, { ...init, headers });
  };
  const json = async (path: string, init: RequestInit & { auth?: string | false } = {}) => {
    const response = await call(path, init);
    return { status: response.status, body: await response.json() };
  };
  const send = (to: string, subject: string) =>
    swaks(server, ["--from", "sender@client.test", "--to", to, "--header", `Subject: ${subject}`]);

  before(async () => {
    const configDir = await tempDir("postern-config-");
    const tempfail = join(configDir, "tempfail.sh");
    await writeTree(configDir, {
      "domains/example.test/users": "alice\n",
      // Deliveries to "slow" fail temporarily (EX_TEMPFAIL), so they stay queued.
      "domains/example.test/aliases": `slow: | ${tempfail}\n`,
      "tempfail.sh": "#!/bin/sh\ncat > /dev/null\nexit 75\n",
    });
    await chmod(tempfail, 0o755);
    server = await startServer({ configDir });
    ({ base, token } = await adminOf(server));
  });
  after(async () => {
    await cleanup(server);
  });

  it("writes a token file only its owner can read, and never logs the token", async () => {
    assert.ok(token.length >= 40);
    assert.equal((await stat(join(server.dataDir, "admin.token"))).mode & 0o777, 0o600);
    assert.ok(!server.stderr().includes(token));
    assert.ok(!server.mailLog.join("\n").includes(token));
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("answers /health without a token, and everything else only with the right one", async () => {
    assert.deepEqual(await json("/health", { auth: false }), {
      status: 200,
      body: { status: "ok" },
    });
    const none = await call("/status", { auth: false });
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.match((await none.json()).error, /bearer token/);
    assert.equal((await call("/status", { auth: `${token}x` })).status, 401);
    assert.equal((await call("/queue", { auth: "short" })).status, 401);
    assert.equal((await call("/metrics", { auth: false })).status, 401);
    assert.equal((await call("/status")).status, 200);
  });

  it("reports status: version, runtime, listeners, policy epoch, queue", async () => {
    const { status, body } = await json("/status");
    assert.equal(status, 200);
    assert.match(body.version, /^\d+\.\d+\.\d+$/);
    assert.match(body.runtime, /^(deno|bun) /);
    assert.deepEqual(body.listeners, [`127.0.0.1:${server.port}`]);
    assert.equal(body.policy.epoch, 1);
    assert.equal(body.policy.last_error, null);
    assert.equal(typeof body.uptime_seconds, "number");
    assert.equal(body.queue.size, 0);
  });

  it("has no fleet without the cluster setting: /status says null, /cluster 404", async () => {
    assert.equal((await json("/status")).body.cluster, null);
    const { status, body } = await json("/cluster");
    assert.equal(status, 404);
    assert.match(body.error, /not in a cluster/);
  });

  it("reloads on POST /reload and reports the new epoch", async () => {
    const { status, body } = await json("/reload", { method: "POST" });
    assert.equal(status, 200);
    assert.equal(body.ok, true);
    assert.equal(body.policy.epoch, 2);
    assert.equal((await json("/status")).body.policy.epoch, 2);
  });

  it("exports metrics in the Prometheus text format that match the traffic sent", async () => {
    for (let i = 0; i < 3; i++) assert.equal((await send("alice@example.test", `m${i}`)).code, 0);
    const refused = await send("nobody@example.test", "refused");
    assert.notEqual(refused.code, 0);
    const response = await call("/metrics");
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(await response.text());
    const family = (name: string) => families.find((f) => f.name === name);
    const value = (name: string, labels: Record<string, string> = {}) =>
      Number(
        family(name)?.metrics.find((m) =>
          Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
        )?.value,
      );
    assert.equal(family("postern_smtp_messages_accepted_total")?.type, "COUNTER");
    assert.equal(value("postern_smtp_messages_accepted_total"), 3);
    assert.equal(
      value("postern_smtp_rejected_total", { stage: "rcpt", reason: "no_such_user" }),
      1,
    );
    assert.ok(value("postern_smtp_connections_total") >= 4);
    assert.equal(value("postern_smtp_transactions_total"), 4);
    assert.equal(value("postern_policy_reloads_total", { result: "ok" }), 1);
    assert.equal(family("postern_policy_epoch")?.type, "GAUGE");
    assert.equal(value("postern_policy_epoch"), 2);
    await eventually(
      async () => {
        const text = await (await call("/metrics")).text();
        const deliveries = parsePrometheus(text).find((f) => f.name === "postern_deliveries_total");
        const sent = deliveries?.metrics.find((m) => m.labels?.result === "sent");
        return Number(sent?.value) === 3 ? true : undefined;
      },
      10_000,
      "three deliveries counted",
    );
  });

  it("lists, shows, holds, releases, retries, bounces and deletes queued messages", async () => {
    for (const subject of ["first", "second"]) {
      assert.equal((await send("slow@example.test", subject)).code, 0);
    }
    const listed = await eventually(
      async () => {
        const { body } = await json("/queue");
        return body.items?.length === 2 &&
            body.items.every((i: { recipients: Array<{ attempts: number }> }) =>
              i.recipients[0]!.attempts >= 1
            )
          ? body
          : undefined;
      },
      10_000,
      "two messages tried once and queued",
    );
    assert.equal(listed.total, 2);
    const [first, second] = listed.items;
    assert.equal(first.from, "sender@client.test");
    assert.deepEqual(first.to, ["slow@example.test"]);
    assert.equal(first.state, "pending");
    assert.match(first.recipients[0].last_error, /75|temporar/i);

    // Filters and paging.
    assert.equal((await json("/queue?domain=example.test")).body.total, 2);
    assert.equal((await json("/queue?domain=other.test")).body.total, 0);
    assert.equal((await json("/queue?sender=SENDER@client.test")).body.total, 2);
    assert.equal((await json("/queue?min_age=3600")).body.total, 0);
    const page = (await json("/queue?limit=1&offset=1")).body;
    assert.equal(page.items.length, 1);
    assert.equal(page.items[0].id, second.id);

    // Show: envelope, recipients and the headers from the spool.
    const shown = (await json(`/queue/${first.id}`)).body;
    assert.match(shown.headers, /^Received: /);
    assert.match(shown.headers, /\r\nSubject: first\r\n/);

    // Hold: kept in the spool's state file, and no more attempts.
    assert.equal((await json(`/queue/${first.id}/hold`, { method: "POST" })).body.done, "held");
    const stateFile = join(server.dataDir, "spool", "queue", `${first.id}.state`);
    assert.equal(JSON.parse(await readFile(stateFile, "utf8")).held, true);
    assert.equal((await json("/queue?state=held")).body.items[0].id, first.id);
    const attemptsHeld = (await json(`/queue/${first.id}`)).body.recipients[0].attempts;
    assert.equal((await json(`/queue/${first.id}/retry`, { method: "POST" })).status, 200);
    // An attempt starts within the request that makes it due (or on a
    // timer of 0 ms): the second message, retried after it, being tried
    // is the event after which an attempt of the held one would show, as
    // "running" or as one more attempt.
    const secondBefore = (await json(`/queue/${second.id}`)).body.recipients[0].attempts;
    await eventually(
      async () =>
        (await json(`/queue/${second.id}/retry`, { method: "POST" })).status === 200 || undefined,
      10_000,
      "the retry of the other message to be taken",
    );
    await eventually(
      async () =>
        (await json(`/queue/${second.id}`)).body.recipients[0].attempts > secondBefore ||
        undefined,
      10_000,
      "an attempt of the other message",
    );
    const held = (await json(`/queue/${first.id}`)).body;
    assert.equal(held.state, "held");
    assert.equal(held.recipients[0].attempts, attemptsHeld);

    // Release: due at once, so it is tried again.
    assert.equal((await json(`/queue/${first.id}/release`, { method: "POST" })).status, 200);
    assert.equal(JSON.parse(await readFile(stateFile, "utf8")).held, undefined);
    await eventually(
      async () => {
        const now = (await json(`/queue/${first.id}`)).body.recipients[0].attempts;
        return now > attemptsHeld ? true : undefined;
      },
      10_000,
      "an attempt after the release",
    );

    // Retry: due now, tried again.
    const before = (await json(`/queue/${second.id}`)).body.recipients[0].attempts;
    await eventually(
      async () => {
        const r = await json(`/queue/${second.id}/retry`, { method: "POST" });
        return r.status === 200 ? true : undefined;
      },
      10_000,
      "the retry to be taken",
    );
    await eventually(
      async () => {
        const now = (await json(`/queue/${second.id}`)).body.recipients[0].attempts;
        return now > before ? true : undefined;
      },
      10_000,
      "an attempt after the retry",
    );

    // Bounce: gone from the queue and the spool, logged as failed.
    const bounced = await eventually(
      async () => {
        const r = await json(`/queue/${first.id}/bounce`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ reason: "no such list any more" }),
        });
        return r.status === 200 ? r.body : undefined;
      },
      10_000,
      "the bounce to be taken",
    );
    assert.equal(bounced.done, "bounced");
    assert.equal((await call(`/queue/${first.id}`)).status, 404);
    await assert.rejects(stat(join(server.dataDir, "spool", "queue", `${first.id}.msg`)));
    await server.waitForLog(
      new RegExp(`qid=${first.id} .*failed.*bounce: no such list any more`),
      5_000,
    );

    // Delete: gone too.
    await eventually(
      async () => {
        const r = await call(`/queue/${second.id}`, { method: "DELETE" });
        return r.status === 200 ? true : undefined;
      },
      10_000,
      "the delete to be taken",
    );
    await assert.rejects(stat(join(server.dataDir, "spool", "queue", `${second.id}.msg`)));
    assert.equal((await json("/queue")).body.total, 0);
    assert.equal((await call(`/queue/${second.id}/retry`, { method: "POST" })).status, 404);
  });

  it("answers bad requests with 400 and the fields at fault, in JSON", async () => {
    const limit = await json("/queue?limit=0");
    assert.equal(limit.status, 400);
    assert.deepEqual(limit.body.issues, [{ field: "limit", problem: "must be at least 1" }]);
    const unknown = await json("/queue?colour=red");
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.issues[0].field, "colour");
    const state = await json("/queue?state=frozen");
    assert.match(state.body.issues[0].problem, /pending, held or running/);
    const body = await json("/queue/nothing/bounce", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reason: 5 }),
    });
    assert.equal(body.status, 400);
    assert.equal(body.body.issues[0].field, "reason");
    const bounce = (content: string, type = "application/json") =>
      json("/queue/nothing/bounce", {
        method: "POST",
        headers: { "content-type": type },
        body: content,
      });
    const malformed = await bounce("{bad");
    assert.equal(malformed.status, 400);
    assert.match(malformed.body.error, /^the request body is not valid JSON/);
    const plain = await bounce('{"reason":"CUSTOM","extra_field":1}', "text/plain");
    assert.equal(plain.status, 415);
    assert.match(plain.body.error, /must be JSON/);
    assert.deepEqual((await bounce("null")).body.issues, [
      { field: "(body)", problem: "must be a JSON object" },
    ]);
    assert.deepEqual((await bounce('{"reason":"x","extra_field":1}')).body.issues, [
      { field: "extra_field", problem: "is not a known field" },
    ]);
    const large = await bounce(JSON.stringify({ reason: "a".repeat(100 * 1024) }));
    assert.equal(large.status, 413);
    assert.match(large.body.error, /larger than 65536 bytes/);
    const missing = await json("/no/such/route");
    assert.equal(missing.status, 404);
    assert.match(missing.body.error, /no route/);
  });

  it("backs the command line: postern status, reload and queue", async () => {
    const postern = (...words: string[]) => {
      const [cmd, ...args] = posternCommand([
        ...words,
        "--config",
        server.configDir,
        "--data",
        server.dataDir,
      ]);
      return run(cmd!, args);
    };
    const status = await postern("status");
    assert.equal(status.code, 0, status.stderr);
    const epoch = JSON.parse(status.stdout).policy.epoch;
    assert.equal(JSON.parse(status.stdout).listeners[0], `127.0.0.1:${server.port}`);
    const reload = await postern("reload");
    assert.equal(reload.code, 0, reload.stderr);
    assert.equal(JSON.parse(reload.stdout).policy.epoch, epoch + 1);

    assert.equal((await send("slow@example.test", "for the cli")).code, 0);
    const listed = await eventually(
      async () => {
        const ls = await postern("queue", "ls");
        return ls.code === 0 && /slow@example\.test/.test(ls.stdout) ? ls.stdout : undefined;
      },
      10_000,
      "the message in postern queue ls",
    );
    assert.match(listed, /^ID\s+AGE\s+STATE\s+FROM/);
    const id = listed.split("\n")[1]!.split(/\s+/)[0]!;
    // 409 while an attempt runs: try until the message is between attempts.
    await eventually(
      async () => {
        const hold = await postern("queue", "hold", id);
        return hold.code === 0 ? true : undefined;
      },
      10_000,
      "postern queue hold to be taken",
    );
    assert.match((await postern("queue", "ls")).stdout, new RegExp(`${id}\\s+\\S+\\s+held`));
    const rm = await postern("queue", "rm", id);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await postern("queue", "ls")).stdout, "queue is empty\n");
    const gone = await postern("queue", "show", id);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no queued message/);
    const bad = await postern("queue", "frobnicate");
    assert.equal(bad.code, 2);
  });

  it("serves an OpenAPI description of every route", async () => {
    const { status, body } = await json("/openapi.json", { auth: false });
    assert.equal(status, 200);
    assert.equal(body.openapi, "3.1.0");
    for (
      const path of ["/health", "/status", "/reload", "/metrics", "/queue", "/queue/{id}"]
    ) {
      assert.ok(body.paths[path], path);
    }
  });

  it("refuses every route of /openapi.json but the public ones without a token or with a wrong one", async () => {
    assert.equal((await send("slow@example.test", "guarded")).code, 0);
    const queued = await eventually(
      async () => {
        const { body } = await json("/queue?state=pending");
        const item = body.items?.find((i: { recipients: unknown[] }) =>
          (i.recipients as Array<{ attempts: number }>)[0]!.attempts >= 1
        );
        return item as { id: string; recipients: Array<{ attempts: number }> } | undefined;
      },
      10_000,
      "a message tried once and queued",
    );
    const spec = (await json("/openapi.json", { auth: false })).body as {
      security: unknown[];
      paths: Record<string, Record<string, { security?: unknown[]; parameters?: unknown[] }>>;
    };
    const methods = ["get", "post", "put", "patch", "delete"];
    // A token of the right length with its last character changed, one too
    // long, and another scheme: each must be refused like none at all.
    const wrong = [
      `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`,
      `${token}x`,
    ];
    let guarded = 0;
    for (const [template, operations] of Object.entries(spec.paths)) {
      const path = template.replace("{id}", queued.id);
      assert.ok(!/[{}]/.test(path), `an unfilled path parameter in ${template}`);
      for (const method of Object.keys(operations).filter((m) => methods.includes(m))) {
        const security = operations[method]!.security ?? spec.security;
        const init = { method: method.toUpperCase() };
        if (security.length === 0) {
          assert.equal((await call(path, { ...init, auth: false })).status, 200, template);
          continue;
        }
        guarded++;
        const answers = [
          await call(path, { ...init, auth: false }),
          ...await Promise.all(wrong.map((auth) => call(path, { ...init, auth }))),
          await call(path, { ...init, auth: false, headers: { authorization: `Basic ${token}` } }),
        ];
        for (const answer of answers) {
          assert.equal(answer.status, 401, `${method.toUpperCase()} ${template}`);
          assert.match(answer.headers.get("www-authenticate") ?? "", /^Bearer/);
          assert.match((await answer.json()).error, /bearer token/);
        }
        // The right token gets past the check (a missing message is a 404).
        const right = await call(template.replace("{id}", "01aaaaaaaaaaaaaa"), init);
        assert.notEqual(right.status, 401, `${method.toUpperCase()} ${template} with the token`);
        await right.body?.cancel();
      }
    }
    // status, reload, metrics, queue, queue/{id} (get, delete) and four actions.
    assert.ok(guarded >= 10, `only ${guarded} guarded operations in /openapi.json`);
    // None of the refused requests acted on the message.
    const after = await json(`/queue/${queued.id}`);
    assert.equal(after.status, 200);
    assert.equal(after.body.state, "pending");
    assert.equal(after.body.recipients[0].status, "pending");
    assert.equal((await json(`/queue/${queued.id}`, { method: "DELETE" })).status, 200);
  });
});
