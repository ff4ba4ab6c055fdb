/**
 * What the loader makes of a file it cannot read: only a missing file is
 * absent. A folder the server may not enter or a symlink loop stands for
 * a file that is there, so each is a ConfigError naming the file (at
 * start-up an error, on a reload the last good policy stays), never users
 * or DKIM keys silently gone.
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { chmod, symlink } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { configDirs, configError } from "./config_dirs.ts";

const ROOT = process.getuid?.() === 0;

const KEY = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

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

  it(
    "names a file in a domain folder it may not enter",
    { skip: ROOT && "root enters any folder (the e2e test drops that power)" },
    async () => {
      const dir = await configDir({ "domains/example.org/users": "bob\n" });
      const folder = join(dir, "domains/example.org");
      await chmod(folder, 0);
      try {
        const error = await configError(dir);
        assert.match(error.message, /domains\/example\.org\/users: cannot read the file: .*EACCES/);
      } finally {
        await chmod(folder, 0o755);
      }
    },
  );

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
});
