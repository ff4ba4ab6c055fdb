import assert from "node:assert/strict";
import { scryptSync } from "node:crypto";
import { before, describe, it } from "node:test";
import { hashPassword, isPasswordHash, verifyPassword } from "../../../src/users/password.ts";

const HASH_SHAPE = /^\$scrypt\$ln=15,r=8,p=1\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** Base64 without padding, as the hash strings carry it. */
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64").replace(/=+$/, "");

/**
 * A hash computed here, independently of the module, at the lowest cost the
 * module accepts (ln=10: a few milliseconds), so that malformed variants of
 * a valid hash cost nothing to try.
 */
function cheapHash(password: string, salt = "0123456789abcdef", ln = 10): string {
  const key = scryptSync(password.normalize("NFC"), salt, 32, { N: 2 ** ln, r: 8, p: 1 });
  return `$scrypt$ln=${ln},r=8,p=1$${b64(new TextEncoder().encode(salt))}$${b64(key)}`;
}

describe("hashPassword / verifyPassword", () => {
  // Two hashes of the same password, computed once for the whole suite.
  let first: string;
  let second: string;
  before(async () => {
    [first, second] = await Promise.all([
      hashPassword("correct horse"),
      hashPassword("correct horse"),
    ]);
  });

  it("gives a $scrypt$ln=15,r=8,p=1$salt$key string with a 16-byte salt and 32-byte key", () => {
    const match = HASH_SHAPE.exec(first);
    assert.ok(match, `unexpected hash shape: ${first}`);
    assert.equal(Buffer.from(match[1]!, "base64").length, 16);
    assert.equal(Buffer.from(match[2]!, "base64").length, 32);
    assert.ok(!`${match[1]}${match[2]}`.includes("="), "base64 must be unpadded");
    assert.equal(isPasswordHash(first), true);
  });

  it("salts each hash on its own: the same password hashes differently", () => {
    assert.match(second, HASH_SHAPE);
    assert.notEqual(first, second);
    assert.notEqual(HASH_SHAPE.exec(first)![1], HASH_SHAPE.exec(second)![1]);
  });

  it("verifies the right password and refuses a wrong one", async () => {
    const [right, wrong] = await Promise.all([
      verifyPassword("correct horse", second),
      verifyPassword("correct horsf", first),
    ]);
    assert.equal(right, true);
    assert.equal(wrong, false);
  });

  it("verifies hashes of another cost made elsewhere (scrypt per RFC 7914)", async () => {
    const hash = cheapHash("s3cret");
    assert.equal(isPasswordHash(hash), true);
    assert.equal(await verifyPassword("s3cret", hash), true);
    assert.equal(await verifyPassword("s3cret ", hash), false);
    assert.equal(await verifyPassword("", hash), false);
    assert.equal(await verifyPassword("s3cret", cheapHash("s3cret", "another salt!!!!")), true);
  });

  it("normalizes unicode passwords to NFC: composed and decomposed é verify the same", async () => {
    const composed = "caf\u00e9";
    const decomposed = "cafe\u0301";
    assert.notEqual(composed, decomposed);
    const hash = await hashPassword(decomposed);
    assert.equal(await verifyPassword(composed, hash), true);
    // The cheap hash is computed from the NFC form; both spellings match it.
    const cheap = cheapHash(composed);
    assert.equal(await verifyPassword(decomposed, cheap), true);
    assert.equal(await verifyPassword("cafe", cheap), false);
  });
});

describe("malformed hashes", () => {
  const valid = cheapHash("pw");
  const [salt, key] = valid.split("$").slice(-2) as [string, string];
  const malformed: Array<[string, string]> = [
    ["empty", ""],
    ["plain text", "pw"],
    ["wrong prefix", valid.replace("$scrypt$", "$argon2id$")],
    ["no leading $", valid.slice(1)],
    ["bcrypt", "$2b$12$abcdefghijklmnopqrstuuQ0lI8mQ1eK9yIu7c5o1h8Jd3uX6eG6C"],
    ["ln=30", `$scrypt$ln=30,r=8,p=1$${salt}$${key}`],
    ["ln=9", `$scrypt$ln=9,r=8,p=1$${salt}$${key}`],
    ["ln=21", `$scrypt$ln=21,r=8,p=1$${salt}$${key}`],
    ["ln=100 (three digits)", `$scrypt$ln=100,r=8,p=1$${salt}$${key}`],
    ["r=0", `$scrypt$ln=10,r=0,p=1$${salt}$${key}`],
    ["r=33", `$scrypt$ln=10,r=33,p=1$${salt}$${key}`],
    ["p=0", `$scrypt$ln=10,r=8,p=0$${salt}$${key}`],
    ["p=17", `$scrypt$ln=10,r=8,p=17$${salt}$${key}`],
    ["negative ln", `$scrypt$ln=-1,r=8,p=1$${salt}$${key}`],
    ["parameters out of order", `$scrypt$r=8,ln=10,p=1$${salt}$${key}`],
    ["missing p", `$scrypt$ln=10,r=8$${salt}$${key}`],
    ["missing key", `$scrypt$ln=10,r=8,p=1$${salt}`],
    ["empty key", `$scrypt$ln=10,r=8,p=1$${salt}$`],
    ["empty salt", `$scrypt$ln=10,r=8,p=1$$${key}`],
    ["characters outside base64", `$scrypt$ln=10,r=8,p=1$${salt}$${key.slice(0, -1)}!`],
    ["url-safe base64", `$scrypt$ln=10,r=8,p=1$${salt}$${key.slice(0, -1)}_`],
    ["base64 of impossible length", `$scrypt$ln=10,r=8,p=1$${salt}$${key}AA`],
    ["salt of impossible length", `$scrypt$ln=10,r=8,p=1$A$${key}`],
    ["trailing garbage", `${valid}$x`],
    ["leading space", ` ${valid}`],
    ["trailing newline", `${valid}\n`],
  ];

  it("the valid hash these are made from does verify", async () => {
    assert.equal(isPasswordHash(valid), true);
    assert.equal(await verifyPassword("pw", valid), true);
  });

  for (const [label, hash] of malformed) {
    it(`${label}: isPasswordHash is false and nothing verifies`, async () => {
      assert.equal(isPasswordHash(hash), false);
      assert.equal(await verifyPassword("pw", hash), false);
      assert.equal(await verifyPassword("", hash), false);
    });
  }

  it("a well-formed hash whose key has the wrong length verifies nothing", async () => {
    const short = `$scrypt$ln=10,r=8,p=1$${salt}$${key.slice(0, 20)}`;
    assert.equal(isPasswordHash(short), true);
    assert.equal(await verifyPassword("pw", short), false);
  });
});

describe("isPasswordHash", () => {
  it("accepts the shapes hashPassword and other costs within bounds produce", () => {
    assert.equal(isPasswordHash("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5"), true);
    assert.equal(isPasswordHash("$scrypt$ln=10,r=1,p=1$c2FsdA$a2V5"), true);
    assert.equal(isPasswordHash("$scrypt$ln=20,r=32,p=16$c2FsdA$a2V5"), true);
  });

  it("refuses names, bare words and other hash schemes", () => {
    assert.equal(isPasswordHash("alice"), false);
    assert.equal(isPasswordHash("$scrypt$"), false);
    assert.equal(isPasswordHash("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="), false);
  });
});
