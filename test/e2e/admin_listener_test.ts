/**
 * The admin API's listener against the running server: it survives running
 * out of descriptors, caps its connections, closes idle ones, and removes
 * `<data>/run/admin.json` when the server stops; `postern check` warns of an
 * address off loopback; a token no client could send stops the start.
 */

import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ADMIN_HTTP_LIMITS } from "../../src/http/http1_server.ts";
import {
  cleanup,
  eventually,
  posternCommand,
  run,
  type Server,
  startServer,
  TARGET,
  tempDir,
  writeTree,
} from "./harness.ts";
import { AT_HARD_FILE_LIMIT, exhaustDescriptors } from "../support/file_limit.ts";
import { within } from "../support/within.ts";

async function adminAddress(server: Server): Promise<string> {
  const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
  return state.address;
}

/** A raw TCP connection: resolves once connected; `closed` gives all it received. */
function rawConnect(
  host: string,
  port: number,
): Promise<{ socket: Socket; closed: Promise<string> }> {
  const socket = connect(port, host);
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(text)));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, closed }));
    socket.once("error", reject);
  });
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

describe("admin API listener", () => {
  it("keeps serving when the process runs out of descriptors, and says so once", async () => {
    const limit = 200;
    const server = await startServer({
      config: {
        "postern.yaml": "smtp:\n  max_connections: 5000\n  max_connections_per_ip: 5000\n",
      },
      // Started under a limit that leaves max_connections as set, then
      // lowered: at a limit of 200 from the start, the descriptor budget
      // would keep SMTP sessions from taking them all.
      wrapper: AT_HARD_FILE_LIMIT,
    });
    const sockets: Socket[] = [];
    try {
      assert.ok(!server.stderr().includes("open file limit"), server.stderr());
      const admin = await adminAddress(server);
      // SMTP connections take every descriptor the server has left.
      sockets.push(
        ...await exhaustDescriptors(
          server.child.pid!,
          limit,
          async () => (await rawConnect(server.host, server.port)).socket,
        ),
      );
      // Accepting this one fails for want of a descriptor.
      const health = fetch(`http://${admin}/health`);
      if (TARGET === "deno") {
        await eventually(
          () =>
            Promise.resolve(
              /admin API cannot accept connections/.test(server.stderr()) || undefined,
            ),
          10_000,
          "the failed accept to be logged",
        );
      }
      for (const socket of sockets.splice(0)) socket.destroy();
      const response = await health;
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { status: "ok" });
      assert.equal(server.child.exitCode, null, server.stderr());
      const warnings = server.stderr().match(/admin API cannot accept connections/g) ?? [];
      assert.ok(warnings.length <= 1, server.stderr());
    } finally {
      for (const socket of sockets) socket.destroy();
      await cleanup(server);
    }
  });

  it("refuses connections over its limit with 503, and closes idle ones", async () => {
    const server = await startServer();
    const held: Array<{ socket: Socket; closed: Promise<string> }> = [];
    try {
      const admin = await adminAddress(server);
      for (let i = 0; i < ADMIN_HTTP_LIMITS.maxConnections; i++) {
        held.push(await rawConnect(server.host, portOf(admin)));
      }
      // Accepted after the others (the listen queue keeps their order), it
      // finds the limit reached. It sends nothing, so the close cannot turn
      // into a reset that loses the answer.
      const over = await rawConnect(server.host, portOf(admin));
      const refused = await within(
        over.closed,
        30_000,
        "an answer to the connection over the limit",
      );
      assert.match(refused, /^HTTP\/1\.1 503 /);
      assert.match(refused, /too many connections/);
      // The idle connections never send a request: the server closes them.
      const bound = 3 * ADMIN_HTTP_LIMITS.headTimeoutMs;
      for (const { closed } of held) {
        assert.equal(await within(closed, bound, "closing an idle connection"), "");
      }
      const response = await fetch(`http://${admin}/health`);
      assert.equal(response.status, 200);
      await response.body?.cancel();
    } finally {
      for (const { socket } of held) socket.destroy();
      await cleanup(server);
    }
  });
  it("writes admin.json for its owner only, and removes it when the server stops", async () => {
    const server = await startServer();
    const state = join(server.dataDir, "run", "admin.json");
    try {
      assert.equal((await stat(state)).mode & 0o777, 0o600);
      assert.match(await adminAddress(server), /^127\.0\.0\.1:\d+$/);
      await server.stop();
      await assert.rejects(stat(state), { code: "ENOENT" });
    } finally {
      await cleanup(server);
    }
  });

  it("postern check warns of an admin address off loopback, and not of one on it", async () => {
    for (const [listen, warns] of [["0.0.0.0:2526", true], ["127.0.0.1:2526", false]] as const) {
      const configDir = await tempDir("postern-config-");
      await writeTree(configDir, { "postern.yaml": `admin:\n  listen: "${listen}"\n` });
      const [cmd, ...args] = posternCommand(["check", "--config", configDir]);
      const result = await run(cmd!, args);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^configuration OK/);
      const warning = `postern: warning: admin.listen ${listen} is not a loopback address`;
      assert.equal(result.stderr.includes(warning), warns, result.stderr);
      if (warns) assert.match(result.stderr, /plain HTTP/);
    }
  });

  it("refuses to start with a token file no client could present, and says why", async () => {
    const configDir = await tempDir("postern-config-");
    const dataDir = await tempDir("postern-data-");
    await writeTree(configDir, { "admin.token": "correct horse battery staple\n" });
    await writeTree(configDir, { "postern.yaml": "admin:\n  token_file: admin.token\n" });
    const [cmd, ...args] = posternCommand([
      "serve",
      "--config",
      configDir,
      "--data",
      dataDir,
      "--listen",
      "127.0.0.1:0",
      "--admin-listen",
      "127.0.0.1:0",
    ]);
    const result = await run(cmd!, args);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^postern: cannot start: .*admin\.token: the admin token may hold/m,
    );
    assert.ok(!result.stderr.includes("correct horse"), result.stderr);
  });
});
