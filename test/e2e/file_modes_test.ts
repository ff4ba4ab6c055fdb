/**
 * The README's deployment (issue 16, defect 4): `/etc/postern` owned
 * root:postern with mode 0750, `postern dkim keygen` and `postern user add`
 * run as root, then `postern check` and `postern serve` run as the
 * unprivileged service user, which must be able to read everything they
 * wrote. `nobody`/`nogroup` (65534) stand in for `postern`; `setpriv`
 * (util-linux) drops the privileges. It needs root to build that layout,
 * which CI has; without root it fails with a message saying so.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, chown, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import {
  eventually,
  freePort,
  maildirMessages,
  posternCommand,
  queuedId,
  run,
  type RunResult,
  swaks,
  TARGET,
  tempDir,
} from "./harness.ts";

const SERVICE = 65534; // nobody:nogroup

/** The command line that runs Postern as the service user. */
function asService(home: string, words: string[]): string[] {
  const command = posternCommand(words);
  // Deno as another user has no cache of its own: the project's node_modules
  // as they are, and nothing from the network.
  if (TARGET === "deno") command.splice(3, 0, "--node-modules-dir=manual", "--cached-only");
  return [
    "setpriv",
    `--reuid=${SERVICE}`,
    `--regid=${SERVICE}`,
    "--clear-groups",
    "env",
    `HOME=${home}`,
    `DENO_DIR=${join(home, "deno")}`,
    ...command,
  ];
}

describe("the README's layout: root writes, the service user reads", () => {
  let base: string;
  let config: string;
  let data: string;
  let home: string;
  let dns: TestDnsServer;

  before(async () => {
    assert.equal(
      process.getuid?.(),
      0,
      "this test builds /etc/postern as root:postern 0750 and drops to an unprivileged user: " +
        "run it as root (CI does)",
    );
    dns = await startDnsServer({});
    base = await tempDir("postern-layout-");
    await chmod(base, 0o755);
    config = join(base, "etc-postern");
    data = join(base, "var-lib-postern");
    home = join(base, "home");
    // install -d -o root -g postern -m 750 /etc/postern
    await mkdir(config);
    await chown(config, 0, SERVICE);
    await chmod(config, 0o750);
    // install -d -o postern -g postern -m 700 /var/lib/postern
    for (const dir of [data, home]) {
      await mkdir(dir);
      await chown(dir, SERVICE, SERVICE);
      await chmod(dir, 0o700);
    }
    const yaml = join(config, "postern.yaml");
    await writeFile(
      yaml,
      `hostname: mx.example.test\ndns:\n  servers: ["${dns.address}"]\n  timeout: 2s\n`,
    );
    await chown(yaml, 0, SERVICE);
    await chmod(yaml, 0o640);
  });
  after(async () => {
    await dns?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  const asRoot = (words: string[], input?: string): Promise<RunResult> => {
    const [cmd, ...args] = posternCommand([...words, "--config", config]);
    return run(cmd!, args, input);
  };
  const mode = async (path: string) => {
    const info = await stat(join(config, path));
    return `${(info.mode & 0o777).toString(8)} ${info.uid}:${info.gid}`;
  };

  it("keygen and user add (as root) write 0750 folders and 0640 files in the config's group", async () => {
    const keygen = await asRoot(["dkim", "keygen", "example.test", "--selector", "s1"]);
    assert.equal(keygen.code, 0, keygen.stderr);
    const add = await asRoot(["user", "add", "alice@example.test"], "pw-alice-1\n");
    assert.equal(add.code, 0, add.stderr);
    assert.equal(await mode("domains"), `750 0:${SERVICE}`);
    assert.equal(await mode("domains/example.test"), `750 0:${SERVICE}`);
    assert.equal(await mode("domains/example.test/dkim"), `750 0:${SERVICE}`);
    assert.equal(await mode("domains/example.test/dkim/s1.pem"), `640 0:${SERVICE}`);
    assert.equal(await mode("domains/example.test/users"), `640 0:${SERVICE}`);
    // Rewriting the users file keeps its owner, group and mode.
    await chmod(join(config, "domains/example.test/users"), 0o660);
    const again = await asRoot(["user", "add", "bob@example.test"], "pw-bob-1\n");
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await mode("domains/example.test/users"), `660 0:${SERVICE}`);
  });

  it("postern check runs as the service user and reads it all", async () => {
    const [cmd, ...args] = asService(home, ["check", "--config", config]);
    const check = await run(cmd!, args);
    assert.equal(check.code, 0, `${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /configuration OK: 1 domain/);
  });

  it("a key folder the service user cannot read stops postern check, naming it", async () => {
    const folder = join(config, "domains/example.test/dkim");
    await chmod(folder, 0o700);
    try {
      const [cmd, ...args] = asService(home, ["check", "--config", config]);
      const check = await run(cmd!, args);
      assert.equal(check.code, 1, `${check.stdout}${check.stderr}`);
      assert.ok(
        check.stderr.includes(`${folder}: cannot read the DKIM key folder`),
        check.stderr,
      );
    } finally {
      await chmod(folder, 0o750);
    }
  });

  it("postern serve runs as the service user and delivers", async () => {
    const port = await freePort();
    const [cmd, ...args] = asService(home, [
      "serve",
      "--config",
      config,
      "--data",
      data,
      "--listen",
      `127.0.0.1:${port}`,
      "--admin-listen",
      "off",
    ]);
    const child = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk: Uint8Array) => stdout += new TextDecoder().decode(chunk));
    child.stderr!.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      await eventually(
        () => {
          if (child.exitCode !== null) throw new Error(`serve exited:\n${stderr}`);
          return Promise.resolve(stdout.includes("event=listening") || undefined);
        },
        30_000,
        "the listener",
      );
      const server = { host: "127.0.0.1", port } as Parameters<typeof swaks>[0];
      const id = queuedId(
        await swaks(server, ["--from", "bob@remote.test", "--to", "alice@example.test"]),
      );
      await eventually(
        async () => (await maildirMessages(data, "example.test", "alice")).length > 0 || undefined,
        15_000,
        `delivery of ${id}`,
      );
      assert.doesNotMatch(stderr, /level=error/);
    } finally {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    }
  });
});
