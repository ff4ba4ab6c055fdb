import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { listUsers, removeUser, setUser, splitAddress } from "../../../src/users/users_file.ts";
import { listDir, makeTempDir, removeDir, writeTree } from "../helpers.ts";

// setUser stores whatever hash it is given, so these need not be real.
const HASH_A = "$scrypt$ln=15,r=8,p=1$c2FsdEFzYWx0QXNhbHRB$a2V5QWtleUFrZXlB";
const HASH_B = "$scrypt$ln=15,r=8,p=1$c2FsdEJzYWx0QnNhbHRC$a2V5QmtleUJrZXlC";

describe("users file", () => {
  let dir: string;
  const usersFile = (domain = "example.test") => join(dir, "domains", domain, "users");
  const read = () => readFile(usersFile(), "utf8");

  beforeEach(async () => {
    dir = await makeTempDir("postern-users-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  describe("setUser", () => {
    it("creates domains/<domain>/users, with the domain and name lower-cased", async () => {
      assert.equal(await setUser(dir, "Alice@EXAMPLE.Test", HASH_A), true);
      assert.deepEqual(await listDir(join(dir, "domains")), ["example.test"]);
      assert.equal(await read(), `alice ${HASH_A}\n`);
      // Not readable by others: the file holds password hashes.
      assert.equal((await stat(usersFile())).mode & 0o007, 0);
    });

    it("appends new users after comments and other lines, which stay as they were", async () => {
      const before = [
        "# Users of example.test",
        "",
        "  # an indented comment",
        "bob",
        `carol:${HASH_B}`,
        "dave   # mailbox only",
      ].join("\n") + "\n";
      await writeTree(dir, { "domains/example.test/users": before });
      assert.equal(await setUser(dir, "alice@example.test", HASH_A), true);
      assert.equal(await read(), `${before}alice ${HASH_A}\n`);
    });

    it("replaces an existing user's line in place instead of adding another", async () => {
      await writeTree(dir, {
        "domains/example.test/users": `# head\nBob\nalice\ncarol ${HASH_B}\n# tail\n`,
      });
      assert.equal(await setUser(dir, "ALICE@example.test", HASH_A), false);
      assert.equal(await read(), `# head\nBob\nalice ${HASH_A}\ncarol ${HASH_B}\n# tail\n`);
      // A second change replaces the hash again; a `name:hash` line is matched too.
      assert.equal(await setUser(dir, "alice@example.test", HASH_B), false);
      assert.equal(await setUser(dir, "carol@example.test", HASH_A), false);
      assert.equal(await setUser(dir, "bob@example.test", HASH_A), false);
      assert.equal(
        await read(),
        `# head\nbob ${HASH_A}\nalice ${HASH_B}\ncarol ${HASH_A}\n# tail\n`,
      );
      const names = (await listUsers(dir, "example.test")).map((u) => u.name);
      assert.deepEqual(names, ["bob", "alice", "carol"]);
    });

    it("does not take a commented-out user for the user", async () => {
      await writeTree(dir, { "domains/example.test/users": "# alice\n#alice old\n" });
      assert.equal(await setUser(dir, "alice@example.test", HASH_A), true);
      assert.equal(await read(), `# alice\n#alice old\nalice ${HASH_A}\n`);
    });

    it("reads CRLF files and writes them back with LF", async () => {
      await writeTree(dir, { "domains/example.test/users": "# c\r\nalice\r\nbob\r\n" });
      assert.equal(await setUser(dir, "bob@example.test", HASH_A), false);
      assert.equal(await read(), `# c\nalice\nbob ${HASH_A}\n`);
    });

    it("writes nowhere but under domains/ (no empty or path-like domains)", async () => {
      // Bad addresses should be refused; whatever happens, nothing may land
      // outside domains/<domain>/ (the temporary directory is removed after).
      await setUser(dir, "alice@../escaped", HASH_A).catch(() => undefined);
      assert.deepEqual(await listDir(join(dir, "escaped")), [], "wrote <configDir>/escaped/users");
      await setUser(dir, "alice@", HASH_A).catch(() => undefined);
      assert.deepEqual(await listDir(join(dir, "domains")), [], "wrote <configDir>/domains/users");
    });

    it("refuses an invalid address without touching the disk", async () => {
      await assert.rejects(setUser(dir, "nobody", HASH_A), /not an address/);
      await assert.rejects(setUser(dir, "a b@example.test", HASH_A), /not an address/);
      assert.deepEqual(await listDir(dir), []);
    });
  });

  describe("removeUser", () => {
    it("removes the user's line and keeps everything else", async () => {
      await writeTree(dir, {
        "domains/example.test/users": `# head\nalice ${HASH_A}\n\nbob\n# tail\n`,
      });
      assert.equal(await removeUser(dir, "Alice@Example.Test"), true);
      assert.equal(await read(), "# head\n\nbob\n# tail\n");
      assert.equal(await removeUser(dir, "bob@example.test"), true);
      assert.equal(await read(), "# head\n\n# tail\n");
      assert.deepEqual(await listUsers(dir, "example.test"), []);
    });

    it("returns false for an unknown user and leaves the file as it was", async () => {
      const content = `# alice\nalice ${HASH_A}\n`;
      await writeTree(dir, { "domains/example.test/users": content });
      assert.equal(await removeUser(dir, "bob@example.test"), false);
      assert.equal(await removeUser(dir, "alice@other.test"), false);
      // "ali" is a prefix of a user, not a user.
      assert.equal(await removeUser(dir, "ali@example.test"), false);
      assert.equal(await read(), content);
      assert.deepEqual(await listDir(join(dir, "domains")), ["example.test"]);
    });

    it("returns false when the domain has no users file, and creates none", async () => {
      assert.equal(await removeUser(dir, "alice@example.test"), false);
      assert.deepEqual(await listDir(dir), []);
    });

    it("empties the file when the last user goes", async () => {
      assert.equal(await setUser(dir, "alice@example.test", HASH_A), true);
      assert.equal(await removeUser(dir, "alice@example.test"), true);
      assert.equal(await read(), "");
      assert.equal(await removeUser(dir, "alice@example.test"), false);
    });
  });

  describe("listUsers", () => {
    it("lists users in file order and tells who can log in", async () => {
      await writeTree(dir, {
        "domains/example.test/users": [
          "# comment",
          `alice ${HASH_A}`,
          "Bob",
          `carol:${HASH_B}`,
          "",
          "dave",
        ].join("\n"),
      });
      const expected = [
        { name: "alice", canLogIn: true },
        { name: "bob", canLogIn: false },
        { name: "carol", canLogIn: true },
        { name: "dave", canLogIn: false },
      ];
      assert.deepEqual(await listUsers(dir, "example.test"), expected);
      assert.deepEqual(await listUsers(dir, "EXAMPLE.test."), expected);
    });

    it("sees what setUser and removeUser did", async () => {
      await setUser(dir, "alice@example.test", HASH_A);
      await writeTree(dir, { "domains/other.test/users": "bob\n" });
      await setUser(dir, "carol@example.test", HASH_B);
      assert.deepEqual(await listUsers(dir, "example.test"), [
        { name: "alice", canLogIn: true },
        { name: "carol", canLogIn: true },
      ]);
      assert.equal(await setUser(dir, "bob@other.test", HASH_A), false);
      assert.deepEqual(await listUsers(dir, "other.test"), [{ name: "bob", canLogIn: true }]);
      await removeUser(dir, "alice@example.test");
      assert.deepEqual(await listUsers(dir, "example.test"), [{ name: "carol", canLogIn: true }]);
    });

    it("returns [] for a domain without a users file", async () => {
      assert.deepEqual(await listUsers(dir, "nowhere.test"), []);
    });
  });

  it("replaces the file atomically: no temporary files are left behind", async () => {
    await writeTree(dir, { "domains/example.test/users": "# keep\n" });
    const names = ["alice", "bob", "carol", "dave", "erin"];
    // Concurrent writers each rename a complete file into place.
    await Promise.all(names.map((name) => setUser(dir, `${name}@example.test`, HASH_A)));
    for (const name of names.slice(0, 3)) await setUser(dir, `${name}@example.test`, HASH_B);
    for (const name of names.slice(3)) await removeUser(dir, `${name}@example.test`);
    assert.deepEqual(await readdir(join(dir, "domains", "example.test")), ["users"]);
    const text = await read();
    assert.ok(text.startsWith("# keep\n"));
    assert.ok(text.endsWith("\n"));
    // Whatever the interleaving, every line is whole.
    for (const line of text.split("\n").slice(1, -1)) {
      assert.match(line, /^[a-z]+ \$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    }
  });
});

describe("splitAddress", () => {
  it("splits and normalizes user@domain", () => {
    assert.deepEqual(splitAddress("alice@example.test"), {
      name: "alice",
      domain: "example.test",
    });
    assert.deepEqual(splitAddress("First.Last+Tag@EXAMPLE.Test."), {
      name: "first.last+tag",
      domain: "example.test",
    });
    assert.deepEqual(splitAddress("o'neil@bücher.example"), {
      name: "o'neil",
      domain: "xn--bcher-kva.example",
    });
  });

  for (const address of ["nobody", "@x", "a..b@x", "a b@x", "", "@", "al\u00efce@x", "a\n@x"]) {
    it(`rejects ${JSON.stringify(address)}`, () => {
      assert.throws(() => splitAddress(address), /is not an address such as alice@example.com/);
    });
  }

  // The domain becomes a folder name under domains/; none of these is a domain.
  for (const address of ["alice@", "alice@../../outside", "alice@x/y", "alice@."]) {
    it(`rejects ${JSON.stringify(address)}, whose domain is no domain`, () => {
      assert.throws(() => splitAddress(address));
    });
  }
});
