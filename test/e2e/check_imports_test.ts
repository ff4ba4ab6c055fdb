/**
 * `postern check` with hooks that import files outside the hooks folder:
 * the check refuses them, as the sandbox does at run time, and its report
 * never quotes them (a password hash, root's line, a JSON file's keys),
 * however deno would have reported them.
 */

import assert from "node:assert/strict";
import { closeSync, constants, openSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { posternCommand, run, type RunResult, tempDir, writeTree } from "./harness.ts";

/** Runs `postern check` on a configuration made of `files`. */
async function check(files: Record<string, string>): Promise<RunResult & { dir: string }> {
  const dir = await tempDir("postern-check-config-");
  await writeTree(dir, files);
  const [cmd, ...args] = posternCommand(["check", "--config", dir]);
  return { ...await run(cmd!, args), dir };
}

const HASH = "$scrypt$ln=15,r=8,p=1$1qT87VL10SUPEGk9UtMj2A$czz4TTalnRS7Da15smid96";
const ACCEPT = 'export default function () { return { action: "accept" as const }; }\n';

describe("postern check and imports outside the hooks folder", () => {
  it("refuses a users file, /etc/passwd and a JSON file, naming each, quoting none", async () => {
    const outside = await tempDir("postern-check-outside-");
    await writeTree(outside, { "conf.json": '{"apiKey": "tok_LIVE_5f2c9a8e1d"}' });
    const result = await check({
      "domains/example.test/users": `alice ${HASH}\n`,
      "hooks/post-data.ts": [
        'import "../domains/example.test/users";',
        'import "/etc/passwd";',
        `import conf from "${join(outside, "conf.json")}" with { type: "json" };`,
        "console.log(conf);",
        ACCEPT,
      ].join("\n"),
    });
    const output = result.stdout + result.stderr;
    assert.equal(result.code, 1, output);
    for (
      const path of [join(result.dir, "domains/example.test/users"), "/etc/passwd", outside]
    ) {
      assert.match(
        output,
        new RegExp(
          `post-data\\.ts imports ${
            path.replaceAll(/[.$]/g, "\\$&")
          }\\S*, outside the hooks folder; the sandbox refuses it`,
        ),
      );
    }
    assert.doesNotMatch(output, /scrypt|alice|root:|tok_LIVE|apiKey/);
  });

  it("refuses what a helper in the hook's folder imports from outside, and type imports", async () => {
    const outside = await tempDir("postern-check-outside-");
    await writeTree(outside, { "secret.ts": 'export const token = "tok_LIVE_types";\n' });
    const result = await check({
      "hooks/alias-exists.ts": 'import "./alias-exists/lib.ts";\n' + ACCEPT,
      "hooks/alias-exists/lib.ts":
        `import type { token } from "${
          join(outside, "secret.ts")
        }";\nexport type T = typeof token;\n` +
        'import "/etc/hostname";\n',
    });
    const output = result.stdout + result.stderr;
    assert.equal(result.code, 1, output);
    assert.match(output, /alias-exists\/lib\.ts imports \/etc\/hostname, outside the hooks folder/);
    assert.match(
      output,
      /alias-exists\/lib\.ts imports types from \S+secret\.ts, outside the hooks folder/,
    );
    assert.doesNotMatch(output, /tok_LIVE/);
  });

  it("opens nothing outside: an import of a FIFO no one writes to does not hold the check up", async () => {
    // deno would wait for a writer as it opened the FIFO; the import map
    // sends every path outside the hooks folder to one that does not exist.
    const outside = await tempDir("postern-check-outside-");
    const fifo = join(outside, "fifo.ts");
    assert.equal((await run("mkfifo", [fifo])).code, 0);
    try {
      const result = await check({ "hooks/alias-resolve.ts": `import "${fifo}";\n${ACCEPT}` });
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(
        result.stderr,
        new RegExp(
          `alias-resolve\\.ts imports ${fifo}, outside the hooks folder; the sandbox refuses it`,
        ),
      );
    } finally {
      // A reader left blocked on it (a check that opened it) gets an end of file.
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // No reader: nothing to release.
      }
    }
  });

  it("still checks a hook whose helpers and data stay in its folder, and reports its own errors", async () => {
    const good = await check({
      "hooks/post-data.ts": 'import { n } from "./post-data/lib.ts";\n' +
        'import data from "./post-data/data.json" with { type: "json" };\n' +
        'import type { PostDataCall } from "./mod.ts";\n' +
        'export default function (_: PostDataCall) { return { action: "accept" as const, headers: [`X-N: ${n + data.x}`] }; }\n',
      "hooks/post-data/lib.ts": "export const n: number = 1;\n",
      "hooks/post-data/data.json": '{"x": 2}',
    });
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /hooks type-check: .*post-data\.ts/);

    const bad = await check({ "hooks/post-data.ts": "const n: number = 'x';\n" + ACCEPT });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /TS2322/);
    assert.match(bad.stderr, new RegExp(`${join(bad.dir, "hooks")}/post-data\\.ts:1:7`));
  });
});
