import assert from "node:assert/strict";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import fc from "fast-check";
import { adminApp, type AdminDeps, loadOrCreateToken, sameToken } from "../../../src/admin/mod.ts";
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

  it("refuses a token no client could present as a bearer token, without quoting it", async () => {
    const path = join(dir, "admin.token");
    const cases: Array<[string, string]> = [
      ["correct horse battery staple", "white space"],
      ["tab\tseparated-token-value", "white space"],
      ["pässwörd-1234567890-abc", "a character outside that set"],
      ["a-long-enough=token-value", "a character outside that set"],
      ["a-long-enough-token-value;", "a character outside that set"],
    ];
    for (const [token, what] of cases) {
      await writeFile(path, `${token}\n`, { mode: 0o600 });
      await assert.rejects(loadOrCreateToken(path), (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.ok(err.message.startsWith(`${path}: the admin token may hold only`), err.message);
        assert.match(err.message, /RFC 6750/);
        assert.ok(err.message.endsWith(`it holds ${what}`), err.message);
        assert.ok(!err.message.includes(token), err.message);
        return true;
      });
    }
  });

  it("accepts every RFC 6750 token of 16 characters or more, and the API then takes it", async () => {
    const path = join(dir, "admin.token");
    const alphabet = [..."ABCXYZabcxyz0189-._~+/"];
    const tokens = fc.tuple(
      fc.array(fc.constantFrom(...alphabet), { minLength: 16, maxLength: 60 }),
      fc.integer({ min: 0, max: 3 }),
    ).map(([chars, pad]) => chars.join("") + "=".repeat(pad));
    await fc.assert(
      fc.asyncProperty(tokens, async (token) => {
        await writeFile(path, `${token}\n`, { mode: 0o600 });
        assert.equal((await loadOrCreateToken(path)).token, token);
        const app = adminApp({ token } as AdminDeps);
        const response = await app.request("/openapi-not-here", {
          headers: { authorization: `Bearer ${token}` },
        });
        // Past the token check: the route is unknown.
        assert.equal(response.status, 404);
      }),
      { numRuns: 50 },
    );
  });

  it("sameToken() compares whole strings", () => {
    assert.equal(sameToken("abcdef", "abcdef"), true);
    assert.equal(sameToken("abcdeg", "abcdef"), false);
    assert.equal(sameToken("abcde", "abcdef"), false);
    assert.equal(sameToken("abcdefg", "abcdef"), false);
    assert.equal(sameToken("", "abcdef"), false);
  });
});
