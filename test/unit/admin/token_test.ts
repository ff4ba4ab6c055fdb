import assert from "node:assert/strict";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { loadOrCreateToken, sameToken } from "../../../src/admin/mod.ts";
import { makeTempDir, openFileDescriptors, removeDir } from "../helpers.ts";

describe("admin token", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("postern-token-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("creates a random 256-bit token in a file of mode 0600, then reads the same one", async () => {
    const path = join(dir, "sub", "admin.token");
    const made = await loadOrCreateToken(path);
    assert.equal(made.created, true);
    assert.match(made.token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await readFile(path, "utf8")).trim(), made.token);
    const again = await loadOrCreateToken(path);
    assert.deepEqual(again, { token: made.token, created: false });
    assert.notEqual((await loadOrCreateToken(join(dir, "other"))).token, made.token);
  });

  it("warns about a token file others can read, and refuses a short token", async () => {
    const path = join(dir, "admin.token");
    await writeFile(path, "a-long-enough-token-value\n");
    await chmod(path, 0o644);
    const loaded = await loadOrCreateToken(path);
    assert.equal(loaded.token, "a-long-enough-token-value");
    assert.match(loaded.warning ?? "", /readable by other users/);
    await writeFile(path, "short\n");
    await assert.rejects(loadOrCreateToken(path), /at least 16 characters/);
  });

  it("accepts a token of exactly 16 characters and refuses 15", async () => {
    const path = join(dir, "admin.token");
    await writeFile(path, `${"x".repeat(16)}\n`, { mode: 0o600 });
    assert.equal((await loadOrCreateToken(path)).token, "x".repeat(16));
    await writeFile(path, `${"x".repeat(15)}\n`);
    await assert.rejects(loadOrCreateToken(path), /at least 16 characters/);
  });

  it("names the file when it exists but cannot be read, and makes no new token", async () => {
    const path = join(dir, "a-directory");
    await mkdir(path);
    await assert.rejects(loadOrCreateToken(path), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.startsWith(`${path}: cannot read the admin token: `), err.message);
      return true;
    });
  });

  it("generates tokens of the URL-safe alphabet only, and leaves no descriptor open", async () => {
    const before = await openFileDescriptors();
    // A random token holds "+" or "/" in base64 about every other time, so
    // twenty of them all but surely show a missing replacement.
    for (let i = 0; i < 20; i++) {
      const { token } = await loadOrCreateToken(join(dir, `t${i}`));
      assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    }
    assert.equal(await openFileDescriptors(), before);
  });

  it("sameToken() compares whole strings", () => {
    assert.equal(sameToken("abcdef", "abcdef"), true);
    assert.equal(sameToken("abcdeg", "abcdef"), false);
    assert.equal(sameToken("abcde", "abcdef"), false);
    assert.equal(sameToken("abcdefg", "abcdef"), false);
    assert.equal(sameToken("", "abcdef"), false);
  });
});
