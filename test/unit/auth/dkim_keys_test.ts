import assert from "node:assert/strict";
import { createPublicKey } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  defaultDkimSelector,
  dkimKeyDir,
  dkimSign,
  type GeneratedDkimKey,
  generateDkimKey,
  loadDkimKeys,
} from "../../../src/auth/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { message, spoolFile } from "./fixtures.ts";

describe("generateDkimKey", () => {
  let dir: string;
  let rsa: GeneratedDkimKey;
  before(async () => {
    dir = await makeTempDir();
    rsa = await generateDkimKey({
      configDir: dir,
      dir: dkimKeyDir(dir, "example.test"),
      domain: "example.test",
      selector: "20240101",
    });
  });
  after(async () => {
    await removeDir(dir);
  });

  it("dkimKeyDir() is <config>/domains/<domain>/dkim", () => {
    assert.equal(
      dkimKeyDir("/etc/postern", "Example.ORG"),
      "/etc/postern/domains/example.org/dkim",
    );
    assert.throws(() => dkimKeyDir("/etc/postern", "../etc"), TypeError);
  });

  it("writes a PKCS#8 PEM key, 0640 in folders 0750: the config group reads, others not", async () => {
    assert.equal(rsa.path, join(dir, "domains", "example.test", "dkim", "20240101.pem"));
    const info = await stat(rsa.path);
    assert.equal(info.mode & 0o777, 0o640);
    assert.equal(info.gid, (await stat(dir)).gid);
    for (const folder of ["domains", "domains/example.test", "domains/example.test/dkim"]) {
      assert.equal((await stat(join(dir, folder))).mode & 0o777, 0o750, folder);
    }
    const pem = await readFile(rsa.path, "utf8");
    assert.equal(pem, rsa.privateKey);
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(createPublicKey(pem).asymmetricKeyDetails?.modulusLength, 2048);
  });

  it("returns the TXT record in character-strings of at most 255 bytes", () => {
    const record = rsa.record;
    assert.equal(record.name, "20240101._domainkey.example.test");
    assert.match(record.value, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
    assert.ok(record.strings.length >= 2, "a 2048-bit key does not fit one string");
    assert.ok(record.strings.every((s) => s.length <= 255));
    assert.equal(record.strings.join(""), record.value);
    assert.equal(
      record.zoneLine,
      `20240101._domainkey.example.test. IN TXT ( ${
        record.strings.map((s) => `"${s}"`).join(" ")
      } )`,
    );
    // p= is the SubjectPublicKeyInfo of the private key's public half.
    const p = record.value.slice(record.value.indexOf("p=") + 2);
    const spki = createPublicKey(rsa.privateKey).export({ type: "spki", format: "der" });
    assert.equal(p, spki.toString("base64"));
  });

  it("refuses to overwrite an existing key", async () => {
    await assert.rejects(
      generateDkimKey({
        dir: dkimKeyDir(dir, "example.test"),
        domain: "example.test",
        selector: "20240101",
      }),
      (err: NodeJS.ErrnoException) => err.code === "EEXIST",
    );
    assert.equal(await readFile(rsa.path, "utf8"), rsa.privateKey);
  });

  it("refuses selectors and domains that are not DNS names", async () => {
    for (const selector of ["../evil", "a/b", "", "-x", "x y"]) {
      await assert.rejects(
        generateDkimKey({ dir, domain: "example.test", selector }),
        TypeError,
        selector,
      );
    }
    await assert.rejects(generateDkimKey({ dir, domain: "exa mple", selector: "s1" }), TypeError);
  });

  it("makes Ed25519 keys published as the bare 32-byte key (RFC 8463)", async () => {
    const ed = await generateDkimKey({
      dir: dkimKeyDir(dir, "example.test"),
      domain: "example.test",
      selector: "ed",
      algorithm: "ed25519",
    });
    assert.match(ed.record.value, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    const p = ed.record.value.slice(ed.record.value.indexOf("p=") + 2);
    assert.equal(Buffer.from(p, "base64").length, 32);
    assert.deepEqual(ed.record.strings, [ed.record.value]);
  });

  it("loadDkimKeys() reads the keys of a domain with their records", () => {
    const keys = loadDkimKeys(dkimKeyDir(dir, "example.test"), "example.test");
    assert.deepEqual(keys.map((k) => [k.selector, k.algorithm]), [["20240101", "rsa"], [
      "ed",
      "ed25519",
    ]]);
    assert.match(keys[1]!.record, /^v=DKIM1; k=ed25519; p=/);
    assert.ok(keys[1]!.record.endsWith(`p=${keys[1]!.publicKey}`));
    assert.deepEqual(loadDkimKeys(join(dir, "nowhere"), "example.test"), []);
  });

  it("defaultDkimSelector() is the UTC date as YYYYMMDD", () => {
    assert.equal(defaultDkimSelector(new Date("2026-03-04T23:59:59Z")), "20260304");
  });

  it("dkimSign() returns a DKIM-Signature field over the message after the offset", async () => {
    const { path, offset } = await spoolFile(dir, "msg", message("alice@example.test"));
    const header = await dkimSign(path, offset, {
      domain: "example.test",
      selector: "20240101",
      privateKey: rsa.privateKey,
    });
    assert.match(
      header,
      /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/,
    );
    assert.match(header, /s=20240101;/);
    assert.match(header, /\r\n$/);
    // The signed header list names From, proof that the envelope line was skipped.
    assert.match(header.replace(/\r\n\s+/g, ""), /h=[^;]*From/i);
  });

  it("dkimSign() rejects a message it cannot sign", async () => {
    const { path, offset } = await spoolFile(dir, "nofrom", "Subject: no From\r\n\r\nbody\r\n");
    await assert.rejects(
      dkimSign(path, offset, { domain: "example.test", selector: "s", privateKey: rsa.privateKey }),
      /Cannot sign the message for "example\.test"/,
    );
  });
});
