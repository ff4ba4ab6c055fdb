import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isPermanentFsError, mailboxDirName, Maildir } from "../../../src/delivery/mod.ts";
import { chunksOf, listDir, makeTempDir, removeDir, retain } from "../helpers.ts";

describe("Maildir", () => {
  let root: string;
  let n = 0;
  before(async () => {
    root = await makeTempDir("postern-maildir-");
  });
  after(async () => {
    await removeDir(root);
  });

  function freshPath(): string {
    return join(root, `box${n++}`);
  }

  it("deliver() creates tmp/, new/ and cur/ and writes the message into new/", async () => {
    const path = freshPath();
    const maildir = retain(new Maildir(path));
    assert.equal(maildir.path, path);
    const stored = await maildir.deliver(
      "123.Qabc.host",
      chunksOf("Subject: x\n", "\nbody\n"),
      false,
    );
    assert.equal(stored, true);
    assert.deepEqual(await listDir(path), ["cur", "new", "tmp"]);
    assert.deepEqual(await listDir(join(path, "new")), ["123.Qabc.host"]);
    assert.deepEqual(await listDir(join(path, "tmp")), []);
    assert.deepEqual(await listDir(join(path, "cur")), []);
    assert.equal(
      await readFile(join(path, "new", "123.Qabc.host"), "utf8"),
      "Subject: x\n\nbody\n",
    );
  });

  it("deliver() replaces a leftover tmp file of the same name from a crash", async () => {
    const path = freshPath();
    await mkdir(join(path, "tmp"), { recursive: true });
    await writeFile(
      join(path, "tmp", "again"),
      "half of an earlier attempt, longer than the message",
    );
    assert.equal(await retain(new Maildir(path)).deliver("again", chunksOf("whole"), true), true);
    assert.equal(await readFile(join(path, "new", "again"), "utf8"), "whole");
    assert.deepEqual(await listDir(join(path, "tmp")), []);
  });

  it("deliver() writes the file with mode 0600", async () => {
    const path = freshPath();
    await retain(new Maildir(path)).deliver("m", chunksOf("x"), false);
    assert.equal((await stat(join(path, "new", "m"))).mode & 0o777, 0o600);
  });

  it("deliver() stores a second message under another name", async () => {
    const path = freshPath();
    const maildir = retain(new Maildir(path));
    assert.equal(await maildir.deliver("one", chunksOf("1"), true), true);
    assert.equal(await maildir.deliver("two", chunksOf("2"), true), true);
    assert.deepEqual(await listDir(join(path, "new")), ["one", "two"]);
  });

  it("deliver() returns false and writes nothing when the name is in new/ and checkExisting is true", async () => {
    const path = freshPath();
    const maildir = retain(new Maildir(path));
    await maildir.deliver("dup", chunksOf("original"), false);
    assert.equal(await maildir.deliver("dup", chunksOf("second copy"), true), false);
    assert.equal(await readFile(join(path, "new", "dup"), "utf8"), "original");
    assert.deepEqual(await listDir(join(path, "tmp")), []);
  });

  it("deliver() returns false when a client moved the message to cur/ as name:2,S", async () => {
    const path = freshPath();
    await mkdir(join(path, "cur"), { recursive: true });
    await writeFile(join(path, "cur", "seen:2,S"), "read already");
    const maildir = retain(new Maildir(path));
    assert.equal(await maildir.deliver("seen", chunksOf("again"), true), false);
    assert.deepEqual(await listDir(join(path, "new")), []);
    assert.deepEqual(await listDir(join(path, "tmp")), []);
  });

  it("deliver() returns false when the name is in cur/ without flags", async () => {
    const path = freshPath();
    await mkdir(join(path, "cur"), { recursive: true });
    await writeFile(join(path, "cur", "bare"), "x");
    assert.equal(await retain(new Maildir(path)).deliver("bare", chunksOf("again"), true), false);
  });

  it("deliver() is not fooled by a cur/ name that only shares a prefix", async () => {
    const path = freshPath();
    await mkdir(join(path, "cur"), { recursive: true });
    await writeFile(join(path, "cur", "name2:2,S"), "other message");
    assert.equal(await retain(new Maildir(path)).deliver("name", chunksOf("new one"), true), true);
    assert.deepEqual(await listDir(join(path, "new")), ["name"]);
  });

  it("deliver() stores the message again when checkExisting is false", async () => {
    const path = freshPath();
    await mkdir(join(path, "cur"), { recursive: true });
    await writeFile(join(path, "cur", "x:2,S"), "old");
    assert.equal(await retain(new Maildir(path)).deliver("x", chunksOf("fresh"), false), true);
    assert.equal(await readFile(join(path, "new", "x"), "utf8"), "fresh");
  });

  it("deliver() throws and leaves no file when the message stream fails", async () => {
    const path = freshPath();
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield new TextEncoder().encode("partial");
      throw new Error("spool read failed");
    }
    await assert.rejects(
      retain(new Maildir(path)).deliver("broken", broken(), false),
      /spool read failed/,
    );
    assert.deepEqual(await listDir(join(path, "new")), []);
    assert.deepEqual(await listDir(join(path, "tmp")), []);
  });
});

describe("mailboxDirName", () => {
  it("mailboxDirName() keeps letters, digits and ._+- as they are", () => {
    assert.equal(mailboxDirName("alice"), "alice");
    assert.equal(mailboxDirName("first.last+tag_x-y9"), "first.last+tag_x-y9");
    assert.equal(mailboxDirName("jörg"), "jörg");
  });

  it("mailboxDirName() escapes a slash", () => {
    assert.equal(mailboxDirName("a/b"), "a%2Fb");
    assert.equal(mailboxDirName("../../etc"), "%2E.%2F..%2Fetc");
  });

  it("mailboxDirName() escapes a leading dot", () => {
    assert.equal(mailboxDirName(".hidden"), "%2Ehidden");
    assert.equal(mailboxDirName("a.b"), "a.b");
  });

  it("mailboxDirName() never returns . or ..", () => {
    assert.equal(mailboxDirName("."), "%2E");
    assert.equal(mailboxDirName(".."), "%2E.");
  });

  it("mailboxDirName() escapes other punctuation, spaces and control characters", () => {
    assert.equal(mailboxDirName("a b"), "a%20b");
    assert.equal(mailboxDirName("a*b"), "a%2Ab");
    assert.equal(mailboxDirName("it's"), "it%27s");
    assert.equal(mailboxDirName("x~y"), "x%7Ey");
    assert.equal(mailboxDirName("a\\b"), "a%5Cb");
    assert.equal(mailboxDirName("a\nb"), "a%0Ab");
    assert.equal(mailboxDirName("a%b"), "a%25b");
  });

  it("mailboxDirName() returns %00 when the name is empty", () => {
    assert.equal(mailboxDirName(""), "%00");
  });

  it("mailboxDirName() gives distinct names to inputs that differ", () => {
    const inputs = ["a/b", "a%2Fb", "a b", "a%20b", ".x", "%2Ex"];
    const names = new Set(inputs.map(mailboxDirName));
    assert.equal(names.size, inputs.length);
  });
});

describe("isPermanentFsError", () => {
  it("isPermanentFsError() is true for the ENAMETOOLONG of Maildir.deliver(), when the folder's name is too long", async () => {
    const root = await makeTempDir("postern-maildir-long-");
    const maildir = retain(new Maildir(join(root, "x".repeat(300))));
    await assert.rejects(maildir.deliver("1.Q.h", chunksOf("x\n"), false), (err: unknown) => {
      assert.equal((err as { code?: unknown }).code, "ENAMETOOLONG");
      assert.equal(isPermanentFsError(err), true);
      return true;
    });
    await removeDir(root);
  });

  it("isPermanentFsError() is true only for errors no retry can heal", () => {
    const withCode = (code: string) => Object.assign(new Error(code), { code });
    for (const code of ["ENAMETOOLONG", "EINVAL", "EILSEQ", "ERR_INVALID_ARG_VALUE"]) {
      assert.equal(isPermanentFsError(withCode(code)), true, code);
    }
    // A full disk, a quota, an I/O error, permissions or a file in the way may pass.
    for (
      const code of ["ENOSPC", "EDQUOT", "EIO", "EACCES", "EPERM", "ENOTDIR", "EEXIST", "EROFS"]
    ) {
      assert.equal(isPermanentFsError(withCode(code)), false, code);
    }
    assert.equal(isPermanentFsError(new Error("no code")), false);
    assert.equal(isPermanentFsError("ENAMETOOLONG"), false);
    assert.equal(isPermanentFsError(undefined), false);
  });
});
