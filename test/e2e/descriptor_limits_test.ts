/**
 * The open file limit against the running server: a limit too low for the
 * settings is reported at start, by `postern check` too, with
 * `smtp.max_connections` lowered to what fits.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  cleanup,
  posternCommand,
  rawSession,
  run,
  startServer,
  tempDir,
  writeTree,
} from "./harness.ts";

/** Runs Postern under `ulimit -n limit`. */
const underLimit = (limit: number) => ["bash", "-c", `ulimit -n ${limit}; exec "$@"`, "bash"];

describe("descriptor limits", () => {
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
