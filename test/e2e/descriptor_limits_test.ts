/**
 * The open file limit against the running server: port 25 takes mail again
 * after the server ran out of descriptors (Deno's node:net listener stops
 * for good after one failed accept; Postern's watch makes it listen again),
 * and a limit too low for the settings is reported at start, by `postern
 * check` too, with `smtp.max_connections` lowered to what fits.
 */

import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  posternCommand,
  rawSession,
  run,
  type Server,
  startServer,
  TARGET,
  tempDir,
  writeTree,
} from "./harness.ts";
import { AT_HARD_FILE_LIMIT, exhaustDescriptors } from "../support/file_limit.ts";

/** Runs Postern under `ulimit -n limit`. */
const underLimit = (limit: number) => ["bash", "-c", `ulimit -n ${limit}; exec "$@"`, "bash"];

/** A raw TCP connection to the server, resolved once connected. */
function rawConnect(server: Server): Promise<Socket> {
  const socket = connect(server.port, server.host);
  socket.on("error", () => {});
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

describe("descriptor limits", () => {
  it("takes mail on port 25 again once descriptors are free after running out", async () => {
    const limit = 150;
    const server = await startServer({
      config: {
        "postern.yaml": "smtp:\n  max_connections: 5000\n  max_connections_per_ip: 5000\n",
        "domains/example.test/users": "alice\n",
      },
      // Started under a limit that leaves max_connections as set, then
      // lowered: at a limit of 150 from the start, the cap would keep
      // sessions from taking every descriptor.
      wrapper: AT_HARD_FILE_LIMIT,
    });
    const sockets: Socket[] = [];
    try {
      assert.ok(!server.stderr().includes("open file limit"), server.stderr());
      // Sessions take every descriptor the server has.
      sockets.push(
        ...await exhaustDescriptors(server.child.pid!, limit, () => rawConnect(server)),
      );
      for (const socket of sockets.splice(0)) socket.destroy();
      // A client tries until it is served: on Deno, connections made while
      // the listener is stopped wait in its queue and are reset when it
      // listens again; a bound on the wait, not a measurement.
      const delivered = await eventually(
        async () => {
          const result = await run("swaks", [
            "--server",
            `${server.host}:${server.port}`,
            "--timeout",
            "10",
            "--from",
            "bob@client.test",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: after EMFILE",
          ]);
          return /250 2\.0\.0 Ok: queued as/.test(result.stdout) ? result : undefined;
        },
        90_000,
        "port 25 to take a message again",
      );
      assert.equal(delivered.code, 0, delivered.stdout);
      const messages = await eventually(async () => {
        const m = await maildirMessages(server.dataDir, "example.test", "alice");
        return m.length === 1 ? m : undefined;
      });
      assert.match(messages[0]!, /Subject: after EMFILE/);
      assert.equal(server.child.exitCode, null, server.stderr());
      if (TARGET === "deno") {
        const restart = await server.waitForLog(/event=listener_restarted/);
        assert.match(restart, /addr=127\.0\.0\.1:\d+ reason=(not_accepted|no_answer)/);
        assert.match(server.stderr(), /SMTP listener stopped accepting connections/);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      await cleanup(server);
    }
  });

  it("reports a limit too low for smtp.max_connections at start and lowers it", async () => {
    const limit = 256;
    const yaml = [
      "smtp:",
      "  max_connections: 500",
      "  max_connections_per_ip: 500",
      "outbound:",
      "  max_connections: 10",
      "delivery:",
      "  concurrency: 4",
    ].join("\n") + "\n";
    const server = await startServer({
      config: { "postern.yaml": yaml },
      wrapper: underLimit(limit),
    });
    const held: Array<Awaited<ReturnType<typeof rawSession>>> = [];
    try {
      const line = await server.waitForLog(/event=descriptor_limit/);
      const fields = Object.fromEntries(
        line.split(" ").map((pair) => pair.split("=") as [string, string]),
      );
      assert.equal(fields["limit"], String(limit), line);
      assert.equal(fields["setting"], "smtp.max_connections", line);
      assert.equal(fields["configured"], "500", line);
      const needed = Number(fields["needed"]);
      const effective = Number(fields["effective"]);
      assert.ok(needed > limit, line);
      assert.ok(effective >= 10 && effective < 500, line);
      const warning = server.stderr();
      assert.match(
        warning,
        new RegExp(`the open file limit \\(${limit}\\) is below the ${needed} `),
      );
      assert.match(warning, new RegExp(`smtp\\.max_connections 500 is lowered to ${effective}`));
      assert.match(warning, new RegExp(`ulimit -n ${needed}`));
      assert.match(warning, new RegExp(`LimitNOFILE=${needed}`));
      // The lowered limit is the one in force.
      for (let i = 0; i < effective; i++) {
        const session = await rawSession(server);
        held.push(session);
        assert.match(await session.read(), /^220 /);
      }
      const over = await rawSession(server);
      held.push(over);
      assert.match(await over.read(), /^421 4\.7\.0 /);
    } finally {
      for (const session of held) session.close();
      await cleanup(server);
    }
  });

  it("postern check warns of the same low limit, and not of a sufficient one", async () => {
    const configDir = await tempDir("postern-config-");
    await writeTree(configDir, { "postern.yaml": "smtp:\n  max_connections: 500\n" });
    for (const [limit, warns] of [[256, true], [8192, false]] as const) {
      const [cmd, ...args] = posternCommand(["check", "--config", configDir]);
      const result = await run("bash", [
        "-c",
        `ulimit -n ${limit}; exec "$@"`,
        "bash",
        cmd!,
        ...args,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const warning = /^postern: warning: the open file limit \((\d+)\) is below the (\d+) /m
        .exec(result.stderr);
      assert.equal(warning !== null, warns, result.stderr);
      if (warning) {
        assert.equal(warning[1], String(limit));
        assert.match(result.stderr, /smtp\.max_connections 500 is lowered to \d+/);
        assert.match(result.stderr, new RegExp(`LimitNOFILE=${warning[2]}`));
      }
    }
  });
});
