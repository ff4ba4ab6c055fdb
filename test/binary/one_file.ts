/**
 * The release binary alone (issue 22): `dist/postern` runs TypeScript hooks
 * with its own embedded deno, in a network namespace that has only loopback
 * and with a PATH that holds nothing but the binary. Also: a damaged copy is
 * replaced on the next start, nothing is extracted without a TypeScript
 * hook, DENO_BIN still overrides, and `postern version` names the runtime.
 *
 * Only for the compiled binary: scripts/test.sh runs this file in its binary
 * phase (the name does not end in `_test.ts`, so the source phases do not
 * pick it up). Needs root, or unprivileged user namespaces, for `unshare`.
 */

import assert from "node:assert/strict";
import { mkdir, readdir, readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  maildirMessages,
  posternCommand,
  ROOT,
  run,
  type Server,
  startServer,
  swaks,
  TARGET,
  tempDir,
  writeTree,
} from "../e2e/harness.ts";

if (TARGET !== "binary") {
  throw new Error("test/binary/ tests the compiled binary: run it with POSTERN_TARGET=binary");
}

/** A hook in TypeScript (type annotations, an interface) that changes the message. */
const HOOK = `
interface Input { mailFrom: string; message: ReadableStream<Uint8Array> }
export default async function (input: Input): Promise<{ action: "accept"; headers: string[] }> {
  const text: string = await new Response(input.message).text();
  const words: number = text.split(/\\s+/).filter((w: string) => w.startsWith("word")).length;
  return { action: "accept", headers: ["X-Typescript-Hook: from=" + input.mailFrom + " words=" + words] };
}
`;

const CONFIG = {
  "domains/example.test/users": "alice\n",
  "hooks/post-data.ts": HOOK,
};

/** Path of the deno of the pinned @deno/<platform> package in node_modules. */
async function pinnedDeno(): Promise<string> {
  const { stdout, code, stderr } = await run("bash", [join(ROOT, "scripts", "pinned_deno.sh")]);
  assert.equal(code, 0, stderr);
  return stdout.trim();
}

/** The version of the pinned @deno/<platform> package in node_modules. */
async function pinnedVersion(): Promise<string> {
  const version = /^deno (\d+\.\d+\.\d+)/.exec(
    (await run(await pinnedDeno(), ["--version"])).stdout,
  );
  assert.ok(version, "the pinned deno reports its version");
  return version[1]!;
}

/** Absolute path of a program on the test's own PATH. */
async function which(name: string): Promise<string> {
  const { stdout, code } = await run("bash", ["-c", `command -v ${name}`]);
  assert.equal(code, 0, `${name} is needed on PATH`);
  return stdout.trim();
}

/**
 * Runs inside a new network namespace: brings up loopback, then for each
 * round starts the binary with PATH=$BIN (nothing but postern) and no other
 * variable, sends one message with swaks, waits for its delivery, asks
 * `postern status`, and stops the server. Between rounds it damages the
 * extracted deno. Everything is bounded: 30 s to listen, 30 s to deliver.
 */
const SCRIPT = `
set -eu
"$IP" link set lo up
"$IP" -o link show | cut -d: -f2 | tr -d ' ' >"$OUT/links"
round() {
  env -i PATH="$BIN" "$BIN/postern" serve --config "$CONFIG" --data "$DATA" \\
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$OUT/mail-$1.log" 2>"$OUT/app-$1.log" &
  pid=$!
  port=""
  for _ in $(seq 300); do
    port=$(sed -n 's/.*event=listening.*addr=127\\.0\\.0\\.1:\\([0-9]*\\).*/\\1/p' "$OUT/mail-$1.log" | head -1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "round $1: not listening" >&2; cat "$OUT/app-$1.log" >&2; kill "$pid" 2>/dev/null; exit 1; }
  "$SWAKS" --server "127.0.0.1:$port" --timeout 20 --from "carol@client.test" \\
    --to alice@example.test --body "word one word two round $1" >"$OUT/swaks-$1.log" 2>&1
  for _ in $(seq 300); do
    [ "$(ls "$DATA/mail/example.test/alice/new" 2>/dev/null | wc -l)" -ge "$1" ] && break
    sleep 0.1
  done
  env -i PATH="$BIN" "$BIN/postern" status --config "$CONFIG" --data "$DATA" >"$OUT/status-$1.json"
  kill -TERM "$pid"
  wait "$pid" || true
}
round 1
deno_copy=$(ls "$DATA"/runtime/deno-*)
chmod u+w "$deno_copy"
printf 'X' | dd of="$deno_copy" bs=1 seek=4096 conv=notrunc status=none
chmod 500 "$deno_copy"
round 2
status=0
env -i PATH="$BIN" "$BIN/postern" check --config "$CONFIG" --data "$DATA" >"$OUT/check.log" 2>&1 ||
  status=$?
echo "exit $status" >>"$OUT/check.log"
env -i PATH="$BIN" "$BIN/postern" hook run post-data --config "$CONFIG" --data "$DATA" \
  --input "$OUT/input.json" --message "$OUT/message.eml" >"$OUT/hook-run.json" 2>"$OUT/hook-run.log" || true
`;

describe("the release binary alone", () => {
  let version: string;
  before(async () => {
    version = await pinnedVersion();
  });

  it("postern version names the embedded deno at the lockfile's version", async () => {
    const [cmd, ...args] = posternCommand(["version"]);
    const result = await run(cmd!, args);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^hook runtime: deno ${version} \\(embedded\\)$`, "m"));
  });

  describe("in a network namespace with only loopback, PATH holding nothing but the binary", () => {
    let work: string;
    let out: string;
    let data: string;
    let script: { code: number; stdout: string; stderr: string };
    before(async () => {
      work = await tempDir("postern-one-file-");
      const bin = join(work, "bin");
      out = join(work, "out");
      data = join(work, "data");
      await writeTree(join(work, "config"), CONFIG);
      await mkdir(out);
      await mkdir(bin);
      await writeTree(out, {
        "input.json": JSON.stringify({
          remoteAddr: "192.0.2.1",
          mailFrom: "dave@client.test",
          rcptTo: ["alice@example.test"],
        }),
        "message.eml": "Subject: hi\r\n\r\nword word word\r\n",
      });
      await symlink(join(ROOT, "dist", "postern"), join(bin, "postern"));
      const env = [
        `BIN=${bin}`,
        `CONFIG=${join(work, "config")}`,
        `DATA=${data}`,
        `OUT=${out}`,
        `IP=${await which("ip")}`,
        `SWAKS=${await which("swaks")}`,
      ];
      const asRoot = process.getuid?.() === 0;
      script = await run(await which("unshare"), [
        "--net",
        ...(asRoot ? [] : ["--map-root-user"]),
        "--",
        "env",
        ...env,
        "bash",
        "-c",
        SCRIPT,
      ]);
    });
    after(async () => {
      await run("rm", ["-rf", work]);
    });

    const log = (name: string) => readFile(join(out, name), "utf8");

    it("the namespace has no interface but loopback", async () => {
      assert.equal(script.code, 0, script.stderr);
      assert.deepEqual((await log("links")).trim().split("\n"), ["lo"]);
    });

    it("a TypeScript hook changes the message, run by the embedded deno extracted on first use", async () => {
      assert.equal(script.code, 0, script.stderr);
      const messages = await maildirMessages(data, "example.test", "alice");
      assert.equal(messages.length, 2, await log("app-1.log"));
      for (const message of messages) {
        assert.match(message, /^X-Typescript-Hook: from=carol@client\.test words=2$/m);
      }
      const app = await log("app-1.log");
      assert.match(
        app,
        new RegExp(`msg="hooks run under deno" .*found=embedded version=${version}`),
      );
      assert.match(app, new RegExp(`msg="hook runtime extracted" path=\\S+/deno-${version} `));
      assert.match(
        app,
        new RegExp(`msg="postern started" .*hook_runtime="deno ${version} \\(embedded\\)"`),
      );
      assert.deepEqual(await readdir(join(data, "runtime")), [`deno-${version}`]);
    });

    it("/status reports the hook runtime", async () => {
      assert.equal(script.code, 0, script.stderr);
      const status = JSON.parse(await log("status-1.json"));
      assert.deepEqual(status.hook_runtime, {
        embedded: version,
        deno: { path: join(data, "runtime", `deno-${version}`), source: "embedded", version },
      });
    });

    it("postern check type-checks the TypeScript hook with the embedded deno", async () => {
      assert.equal(script.code, 0, script.stderr);
      const check = await log("check.log");
      assert.match(check, /^hooks type-check: \S+\/hooks\/post-data\.ts$/m, check);
      assert.match(check, /^exit 0$/m);
    });

    it("postern hook run runs the hook with the embedded deno in the data folder", async () => {
      assert.equal(script.code, 0, script.stderr);
      const report = JSON.parse(await log("hook-run.json"));
      assert.deepEqual(report, {
        hook: "post-data",
        verdict: "accept",
        headers: ["X-Typescript-Hook: from=dave@client.test words=3"],
        dropped: [],
      }, await log("hook-run.log"));
      assert.deepEqual(await readdir(join(data, "runtime")), [`deno-${version}`]);
    });

    it("a damaged copy is found at the next start and replaced before any hook runs", async () => {
      assert.equal(script.code, 0, script.stderr);
      const app = await log("app-2.log");
      assert.match(app, /msg="hook runtime copy was damaged or altered; replaced"/);
      assert.doesNotMatch(app, /msg="hook runtime extracted"/);
      const messages = await maildirMessages(data, "example.test", "alice");
      assert.match(messages[1] ?? "", /round 2/);
      assert.match(messages[1] ?? "", /^X-Typescript-Hook: /m);
    });
  });

  describe("without a TypeScript hook", () => {
    let server: Server | undefined;
    after(async () => {
      await cleanup(server);
    });

    it("nothing is extracted", async () => {
      server = await startServer({ config: { "domains/example.test/users": "alice\n" } });
      const result = await swaks(server, ["--from", "c@client.test", "--to", "alice@example.test"]);
      assert.equal(result.code, 0, result.stdout);
      assert.match(
        server.stderr(),
        /msg="postern started" .*hook_runtime="deno \d+\.\d+\.\d+ \(embedded\)"/,
      );
      await assert.rejects(readdir(join(server.dataDir, "runtime")), { code: "ENOENT" });
    });
  });

  describe("started in a folder holding a .env and a bunfig.toml", () => {
    let server: Server | undefined;
    after(async () => {
      await cleanup(server);
    });

    // A compiled Bun program reads both from its working directory unless
    // it is built not to: a .env would set DENO_BIN (which program runs the
    // hooks) or NODE_TLS_REJECT_UNAUTHORIZED, and a bunfig.toml's preload
    // would run its code inside the server.
    it("reads neither: no variable comes from .env, no preload runs", async () => {
      const deno = await pinnedDeno();
      const cwd = await tempDir("postern-cwd-");
      const marker = join(cwd, "preloaded");
      await writeTree(cwd, {
        ".env": `DENO_BIN=${deno}\n`,
        ".env.local": `DENO_BIN=${deno}\n`,
        "bunfig.toml": 'preload = ["./preload.js"]\n',
        "preload.js": `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "ran");\n`,
      });
      server = await startServer({ config: CONFIG, cwd });
      const result = await swaks(server, ["--from", "c@client.test", "--to", "alice@example.test"]);
      assert.equal(result.code, 0, result.stdout);
      assert.match(server.stderr(), /msg="hooks run under deno" .*found=embedded /);
      assert.match(
        server.stderr(),
        /msg="postern started" .*hook_runtime="deno \d+\.\d+\.\d+ \(embedded\)"/,
      );
      assert.doesNotMatch(server.stderr(), /DENO_BIN/);
      await assert.rejects(readFile(marker), { code: "ENOENT" });
    });
  });

  describe("with DENO_BIN", () => {
    let server: Server | undefined;
    after(async () => {
      await cleanup(server);
    });

    it("DENO_BIN overrides the embedded deno, which is then not extracted", async () => {
      const deno = await pinnedDeno();
      server = await startServer({ config: CONFIG, env: { DENO_BIN: deno } });
      const result = await swaks(server, [
        "--from",
        "c@client.test",
        "--to",
        "alice@example.test",
        "--body",
        "word",
      ]);
      assert.equal(result.code, 0, result.stdout);
      assert.match(server.stderr(), new RegExp(`found=DENO_BIN`));
      assert.ok(
        server.stderr().includes(`hook_runtime="deno ${version} (DENO_BIN: ${deno})"`),
        server.stderr(),
      );
      await assert.rejects(readdir(join(server.dataDir, "runtime")), { code: "ENOENT" });
    });
  });
});
