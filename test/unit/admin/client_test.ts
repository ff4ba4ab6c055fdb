import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { runAdminCommand } from "../../../src/admin/client.ts";
import { type Http1Server, serveHttp1 } from "../../../src/http/http1_server.ts";
import { adminApp, type AdminDeps } from "../../../src/admin/mod.ts";
import type { Config } from "../../../src/config/mod.ts";
import { listenTcp } from "../../../src/runtime/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

const TOKEN = "the-real-token-0123456789abcdefghijklmnop";

/** What `postern status|reload|queue` needs of the configuration. */
function configFor(dataDir: string): Config {
  return {
    dataDir,
    admin: { listen: undefined, tokenFile: join(dataDir, "admin.token") },
  } as unknown as Config;
}

/** Records `address` in `<data>/run/admin.json`, as a running server does. */
async function recordAddress(dataDir: string, address: string): Promise<void> {
  await mkdir(join(dataDir, "run"), { recursive: true });
  await writeFile(join(dataDir, "run", "admin.json"), JSON.stringify({ address }) + "\n");
}

/** Dependencies of the real app with a policy that reloads; the rest throws. */
function deps(overrides: Partial<AdminDeps> = {}): AdminDeps {
  const base = {
    token: TOKEN,
    policy: {
      reload: () => Promise.resolve(),
      status: () => ({
        epoch: 7,
        loadedAt: new Date(0),
        lastError: undefined,
        pendingRestart: [],
        reloads: { ok: 1, failed: 0 },
      }),
    },
    ...overrides,
  } as unknown as AdminDeps;
  return new Proxy(base, {
    get(target, prop) {
      if (prop in target) return target[prop as keyof AdminDeps];
      if (prop === "now" || prop === "then") return undefined;
      throw new Error(`${String(prop)} is not part of this test`);
    },
  });
}

describe("runAdminCommand", () => {
  let dataDir: string;
  const servers: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    dataDir = await makeTempDir("postern-cli-");
    await writeFile(join(dataDir, "admin.token"), `${TOKEN}\n`, { mode: 0o600 });
  });
  afterEach(async () => {
    for (const close of servers.splice(0)) await close();
    await removeDir(dataDir);
  });

  /** The real admin app on a loopback port. */
  const startApp = async (overrides: Partial<AdminDeps> = {}): Promise<Http1Server> => {
    const app = adminApp(deps(overrides));
    const server = serveHttp1(await listenTcp("127.0.0.1", 0), (r) => app.fetch(r), {
      warn: () => {},
      info: () => {},
    });
    servers.push(() => server.close());
    return server;
  };

  /**
   * Another program on the port a stale admin.json names: it answers every
   * request 200 with `body` and records the headers it was sent.
   */
  const startSquatter = async (body: unknown): Promise<{
    address: string;
    seen: IncomingHttpHeaders[];
  }> => {
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((request, response) => {
      seen.push(request.headers);
      response.setHeader("content-type", "application/json");
      response.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    servers.push(() => new Promise((resolve) => server.close(() => resolve())));
    const { port } = server.address() as { port: number };
    return { address: `127.0.0.1:${port}`, seen };
  };

  it("sends the token only to a server that proves it holds the token", async () => {
    for (const body of [{ status: "ok" }, { status: "ok", proof: "made-up" }]) {
      const squatter = await startSquatter(body);
      await recordAddress(dataDir, squatter.address);
      for (const words of [["status"], ["reload"], ["queue", "ls"], ["queue", "rm", "x"]]) {
        const result = await runAdminCommand(configFor(dataDir), words);
        assert.equal(result.status, 1, words.join(" "));
        assert.equal(result.stdout, "");
        assert.match(result.stderr, /does not prove it is this server, so the token was not sent/);
        assert.match(result.stderr, /run\/admin\.json/);
      }
      assert.ok(squatter.seen.length > 0);
      for (const headers of squatter.seen) {
        assert.equal(headers.authorization, undefined);
        assert.ok(!JSON.stringify(headers).includes(TOKEN));
      }
    }
  });

  it("talks to the server that holds the token", async () => {
    const server = await startApp();
    await recordAddress(dataDir, server.address);
    const result = await runAdminCommand(configFor(dataDir), ["reload"]);
    assert.equal(result.stderr, "");
    assert.equal(result.status, 0);
    assert.equal(JSON.parse(result.stdout).policy.epoch, 7);
  });

  it("refuses a server that holds another token", async () => {
    const other = adminApp(deps({ token: `${TOKEN}-other` } as Partial<AdminDeps>));
    const server = serveHttp1(await listenTcp("127.0.0.1", 0), (r) => other.fetch(r), {
      warn: () => {},
      info: () => {},
    });
    servers.push(() => server.close());
    await recordAddress(dataDir, server.address);
    const result = await runAdminCommand(configFor(dataDir), ["reload"]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /does not prove/);
  });

  it("sends nothing when the token file holds what no bearer token may", async () => {
    const squatter = await startSquatter({ status: "ok" });
    await recordAddress(dataDir, squatter.address);
    await writeFile(join(dataDir, "admin.token"), "correct horse battery staple\n");
    const result = await runAdminCommand(configFor(dataDir), ["status"]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /admin\.token: the admin token may hold only .* white space\n$/);
    assert.deepEqual(squatter.seen, []);
  });

  it("says the server does not answer when nothing listens at the address", async () => {
    const listener = await listenTcp("127.0.0.1", 0);
    const address = listener.address;
    listener.close();
    await recordAddress(dataDir, address);
    const result = await runAdminCommand(configFor(dataDir), ["status"]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /does not answer .*is postern running\?/);
  });

  it("escapes the control characters of what the server sends, in tables, JSON and errors", async () => {
    // A hostile MX's reply as the queue keeps it, and a sender to match.
    const lastError = "550 \x1b[31mred\x1b]0;owned\x07 \x9b2J \u202eevil\r\nX: y\x7f";
    const entry = {
      item: {
        envelope: {
          id: "01hostile",
          from: "a\x1b[8mb@example.test",
          to: ["x@example.test"],
          received_at: new Date().toISOString(),
          client: {},
        },
        state: {
          recipients: [
            { address: "x@example.test", status: "pending", attempts: 1, last_error: lastError },
          ],
        },
      },
      dueAt: Date.now(),
      running: false,
      held: false,
    };
    const server = await startApp({
      queue: { list: () => [entry], get: (id: string) => id === "01hostile" ? entry : undefined },
      spool: {
        async *openMessage() {
          yield new TextEncoder().encode("Subject: \x1b[2Jhi\r\n\r\nbody");
        },
      },
    } as unknown as Partial<AdminDeps>);
    await recordAddress(dataDir, server.address);
    // Nothing but printable text and the newlines between lines.
    // deno-lint-ignore no-control-regex -- control characters are what it looks for
    const raw = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/;

    const ls = await runAdminCommand(configFor(dataDir), ["queue", "ls"]);
    assert.equal(ls.status, 0, ls.stderr);
    assert.doesNotMatch(ls.stdout, raw);
    assert.ok(ls.stdout.includes("550 \\x1b[31mred\\x1b]0;owned\\x07 \\x9b2J \\u{202e}evil"));
    assert.ok(ls.stdout.includes("<a\\x1b[8mb@example.test>"));

    const show = await runAdminCommand(configFor(dataDir), ["queue", "show", "01hostile"]);
    assert.equal(show.status, 0, show.stderr);
    assert.doesNotMatch(show.stdout, raw);
    // Still JSON, with the same strings.
    const shown = JSON.parse(show.stdout);
    assert.equal(shown.recipients[0].last_error, lastError);
    assert.equal(shown.headers, "Subject: \x1b[2Jhi\r\n");

    const missing = await runAdminCommand(configFor(dataDir), ["queue", "show", "\x1b[2J\u202e"]);
    assert.equal(missing.status, 1);
    assert.equal(missing.stderr, "postern: no queued message \\x1b[2J\\u{202e}\n");
  });
});
