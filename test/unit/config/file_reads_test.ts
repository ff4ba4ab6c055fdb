/**
 * What the loader makes of a file it cannot read: only a missing file is
 * absent. A folder the server may not enter, a symlink loop, a FIFO, a
 * device stand for files that are there, so each is a ConfigError naming
 * the file (at start-up an error, on a reload the last good policy stays),
 * never users or DKIM keys silently gone, and never a read that blocks.
 */

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { symlink } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { configDirs, configError } from "./config_dirs.ts";

const KEY = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

/**
 * Makes `path` a FIFO with a writer waiting to write `text` into it: code
 * that opens it for a plain read gets `text` instead of hanging (as the
 * old code did), and code that refuses it leaves the writer waiting, to be
 * stopped by {@linkcode stopWriter}.
 */
function fifoWithWriter(path: string, text: string): ChildProcess {
  execFileSync("mkfifo", [path]);
  return spawn("sh", ["-c", 'printf "%s" "$1" > "$2"', "sh", text, path], { stdio: "ignore" });
}

async function stopWriter(writer: ChildProcess): Promise<void> {
  if (writer.exitCode !== null || writer.signalCode !== null) return;
  const exited = new Promise((resolve) => writer.once("exit", resolve));
  writer.kill("SIGKILL");
  await exited;
}

describe("loadConfig() and files it cannot read", () => {
  const configDir = configDirs("postern-reads-");

  it("names a users file behind a symlink loop instead of dropping its users", async () => {
    const dir = await configDir({ "domains/example.org/aliases": "" });
    const users = join(dir, "domains/example.org/users");
    await symlink("users", users);
    const error = await configError(dir);
    assert.equal(error.file, users);
    assert.match(error.message, new RegExp(`^${users}: cannot read the file: .*ELOOP`));
  });

  it("names a DKIM folder it cannot list instead of signing with no key", async () => {
    const dir = await configDir({ "domains/example.org/users": "bob\n" });
    await symlink("dkim", join(dir, "domains/example.org/dkim"));
    const error = await configError(dir);
    assert.equal(error.kind, "dkim_key");
    assert.match(
      error.message,
      /domains\/example\.org\/dkim: cannot read the DKIM key folder: .*ELOOP/,
    );
  });

  it("keeps reading a missing DKIM folder as no keys, and a readable one as its keys", async () => {
    const none = await configDir({ "domains/example.org/users": "bob\n" });
    assert.deepEqual(
      (await loadConfig({ configDir: none })).domains.get("example.org")!.dkimKeys,
      [],
    );
    const one = await configDir({ "domains/example.org/dkim/sel1.pem": KEY });
    const keys = (await loadConfig({ configDir: one })).domains.get("example.org")!.dkimKeys;
    assert.deepEqual(keys.map((k) => k.selector), ["sel1"]);
  });

  it("refuses a postern.yaml that is a FIFO, without waiting for a writer", async () => {
    const dir = await configDir({});
    const main = join(dir, "postern.yaml");
    const writer = fifoWithWriter(main, "hostname: mx.example.test\n");
    try {
      const error = await configError(dir);
      assert.equal(error.file, main);
      assert.equal(error.message, `${main}: cannot read the file: not a regular file (a FIFO)`);
    } finally {
      await stopWriter(writer);
    }
  });

  it("refuses a users file that is a device, a DKIM key and a password file that are FIFOs", async () => {
    const device = await configDir({ "domains/example.org/aliases": "" });
    await symlink("/dev/null", join(device, "domains/example.org/users"));
    assert.match(
      (await configError(device)).message,
      /users: cannot read the file: not a regular file \(a device\)/,
    );

    const dkim = await configDir({ "domains/example.org/dkim/other.txt": "" });
    const key = join(dkim, "domains/example.org/dkim/sel1.pem");
    const keyWriter = fifoWithWriter(key, KEY);
    try {
      const error = await configError(dkim);
      assert.equal(error.kind, "dkim_key");
      assert.match(
        error.message,
        /sel1\.pem: cannot read the DKIM key: not a regular file \(a FIFO\)/,
      );
    } finally {
      await stopWriter(keyWriter);
    }

    const cluster = await configDir({
      "postern.yaml": 'cluster:\n  url: "redis://127.0.0.1:6379"\n  password_file: pw\n',
    });
    const passwordWriter = fifoWithWriter(join(cluster, "pw"), "secret\n");
    try {
      assert.match(
        (await configError(cluster)).message,
        /cluster\.password_file: cannot read ".*pw": not a regular file \(a FIFO\)/,
      );
    } finally {
      await stopWriter(passwordWriter);
    }
  });
});
