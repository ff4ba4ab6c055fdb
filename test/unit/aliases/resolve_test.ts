import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  AliasDepthError,
  AliasExpansionLimitError,
  AliasLookupLimitError,
  type AliasTarget,
  type Destination,
  type LocalDomain,
  MAX_ALIAS_DEPTH,
  MAX_ALIAS_LOOKUPS,
  MAX_EXTRA_LOOKUPS,
  parseAliases,
  RecipientResolver,
} from "../../../src/aliases/mod.ts";

const OPTIONS = { suffixSeparators: "+", dropCharacters: "." };

function domain(name: string, users: string[], aliases = "", anyUser = false): LocalDomain {
  return { name, anyUser, users: new Set(users), aliases: parseAliases(aliases, name) };
}

function resolver(...domains: LocalDomain[]): RecipientResolver {
  return new RecipientResolver(new Map(domains.map((d) => [d.name, d])), OPTIONS);
}

function mailbox(user: string, domainName: string): Destination {
  return { kind: "mailbox", domain: domainName, user };
}

/** Sorts destinations so that tests do not depend on expansion order. */
function sorted(destinations: Destination[]): string[] {
  return destinations.map((d) => JSON.stringify(d)).sort();
}

function assertSameDestinations(actual: Destination[], expected: Destination[]): void {
  assert.deepEqual(sorted(actual), sorted(expected));
}

describe("RecipientResolver.isLocalDomain", () => {
  it("isLocalDomain() matches any case, a trailing dot and U-labels", () => {
    const r = resolver(domain("xn--bcher-kva.de", []), domain("ex.test", []));
    assert.equal(r.isLocalDomain("EX.TEST"), true);
    assert.equal(r.isLocalDomain("ex.test."), true);
    assert.equal(r.isLocalDomain("Bücher.de"), true);
    assert.equal(r.isLocalDomain("other.test"), false);
  });
});

describe("RecipientResolver.exists", () => {
  const r = resolver(
    domain("ex.test", ["alice", "firstlast"], "sales: alice\n"),
    domain("catch.test", ["bob"], "*: bob\n"),
    domain("any.test", [], "", true),
  );

  it("exists() is true for a user in any case, with a suffix or drop characters", () => {
    assert.equal(r.exists("alice@ex.test"), true);
    assert.equal(r.exists("ALICE@EX.TEST"), true);
    assert.equal(r.exists("alice+news@ex.test"), true);
    assert.equal(r.exists("First.Last@ex.test"), true);
  });

  it("exists() is true for an alias", () => {
    assert.equal(r.exists("sales@ex.test"), true);
    assert.equal(r.exists("Sales+x@ex.test"), true);
  });

  it("exists() is false for an unknown name when the domain has no catch-all", () => {
    assert.equal(r.exists("nobody@ex.test"), false);
  });

  it("exists() is false when the domain is not local", () => {
    assert.equal(r.exists("alice@remote.test"), false);
  });

  it("exists() is always true for postmaster in a local domain", () => {
    assert.equal(r.exists("postmaster@ex.test"), true);
    assert.equal(r.exists("PostMaster@catch.test"), true);
    assert.equal(r.exists("postmaster@any.test"), true);
    assert.equal(r.exists("postmaster@remote.test"), false);
  });

  it("exists() is true for any name when the domain has a catch-all", () => {
    assert.equal(r.exists("whoever@catch.test"), true);
  });

  it("exists() is true for any name when the domain is any_user", () => {
    assert.equal(r.exists("random.person+x@any.test"), true);
  });
});

describe("RecipientResolver.resolve", () => {
  it("resolve() returns the user's mailbox when the address is a user", async () => {
    const r = resolver(domain("ex.test", ["alice"]));
    assert.deepEqual(await r.resolve("Alice+tag@EX.test"), [mailbox("alice", "ex.test")]);
  });

  it("resolve() follows aliases recursively when aliases point at aliases", async () => {
    const r = resolver(
      domain("ex.test", ["alice", "bob"], "team: leads, bob\nleads: alice\n"),
    );
    assertSameDestinations(await r.resolve("team@ex.test"), [
      mailbox("alice", "ex.test"),
      mailbox("bob", "ex.test"),
    ]);
  });

  it("resolve() follows aliases across local domains", async () => {
    const r = resolver(
      domain("a.test", [], "x: y@b.test\n"),
      domain("b.test", ["y"]),
    );
    assert.deepEqual(await r.resolve("x@a.test"), [mailbox("y", "b.test")]);
  });

  it("resolve() keeps a mailbox copy when an alias lists itself", async () => {
    const r = resolver(domain("ex.test", ["root"], "root: root, admin@remote.test\n"));
    assertSameDestinations(await r.resolve("root@ex.test"), [
      mailbox("root", "ex.test"),
      { kind: "remote", address: "admin@remote.test" },
    ]);
  });

  it("resolve() terminates when aliases form a loop", async () => {
    const r = resolver(domain("ex.test", [], "a: b\nb: a\n"));
    // a -> b -> a: a is already being expanded, so it lands in a's mailbox.
    assert.deepEqual(await r.resolve("a@ex.test"), [mailbox("a", "ex.test")]);
    assert.deepEqual(await r.resolve("b@ex.test"), [mailbox("b", "ex.test")]);
  });

  // The limit is the 10 levels the README documents (RFC 5321 section 6.3, loop
  // detection), written out here so that a change to the constant fails.
  const DEPTH_LIMIT = 10;

  /** A chain a0 -> a1 -> ... -> a<depth>, the last one a user. */
  function chain(depth: number): RecipientResolver {
    const lines: string[] = [];
    for (let i = 0; i < depth; i++) lines.push(`a${i}: a${i + 1}`);
    return resolver(domain("ex.test", [`a${depth}`], lines.join("\n")));
  }

  it("MAX_ALIAS_DEPTH is 10", () => {
    assert.equal(MAX_ALIAS_DEPTH, DEPTH_LIMIT);
  });

  it("resolve() expands a chain of exactly 10 aliases", async () => {
    assert.deepEqual(await chain(DEPTH_LIMIT).resolve("a0@ex.test"), [mailbox("a10", "ex.test")]);
  });

  it("resolve() throws AliasDepthError when aliases nest deeper than 10", async () => {
    await assert.rejects(() => chain(DEPTH_LIMIT + 1).resolve("a0@ex.test"), (err: unknown) => {
      assert.ok(err instanceof AliasDepthError);
      assert.ok(err instanceof RangeError);
      assert.match(err.message, /a0@ex\.test/);
      assert.match(err.message, /more than 10 levels/);
      return true;
    });
  });

  it("resolve() stops after MAX_EXTRA_LOOKUPS hook calls: a hook cannot make expansion exponential", async () => {
    // A hostile alias-resolve hook: every address expands to 20 new names
    // one level down, 9 levels deep (within MAX_ALIAS_DEPTH, no loop, no
    // name twice): 20 to the 9th power calls. After 5,000 calls it answers
    // nothing, so that the expansion without a limit ends too.
    let calls = 0;
    const extra = (address: string): Promise<AliasTarget[]> => {
      const local = address.split("@")[0]!;
      const level = local.split("-").length - 1;
      const names: AliasTarget[] = level >= 9 ? [] : Array.from({ length: 20 }, (_, i) => ({
        kind: "address",
        address: `${local}-${i}@example.com`,
      }));
      return Promise.resolve(++calls > 5000 ? [] : names);
    };
    const r = resolver(domain("example.com", ["jose"]));
    await assert.rejects(r.resolve("list@example.com", extra), (err: unknown) => {
      assert.ok(err instanceof AliasLookupLimitError, String(err));
      assert.match(
        err.message,
        /"list@example\.com": the alias-resolve hook was asked more than 1000 times/,
      );
      return true;
    });
    assert.equal(MAX_EXTRA_LOOKUPS, 1000);
    // The call past the limit is the one that tells.
    assert.equal(calls, MAX_EXTRA_LOOKUPS + 1);
  });

  it("resolve() lets extra targets expand a list of many local members", async () => {
    const members = Array.from({ length: 900 }, (_, i) => `m${i}`);
    const extra = (address: string): Promise<AliasTarget[]> =>
      Promise.resolve(
        address === "list@example.com"
          ? members.map((m) => ({ kind: "address", address: `${m}@example.com` }))
          : [],
      );
    const r = resolver(domain("example.com", members));
    const found = await r.resolve("list@example.com", extra);
    assert.equal(found.length, 900);
  });

  it("resolve() counts only hook calls against MAX_EXTRA_LOOKUPS: without a hook, a list of 5,000 members expands", async () => {
    const members = Array.from({ length: 5000 }, (_, i) => `m${i}`);
    let asked = 0;
    // What the alias-resolve hook's source answers when no hook is installed.
    const noHook = (): Promise<undefined> => {
      asked++;
      return Promise.resolve(undefined);
    };
    const r = resolver(domain("example.com", members, `everyone: ${members.join(", ")}\n`));
    const found = await r.resolve("everyone@example.com", noHook);
    assert.equal(found.length, 5000);
    assert.equal(asked, 5001);
    // A hook that is there and answers nothing is asked, and counted.
    const empty = () => Promise.resolve([]);
    await assert.rejects(r.resolve("everyone@example.com", empty), AliasLookupLimitError);
  });

  it("resolve() asks the hook once per address, however many aliases lead to it", async () => {
    const asked: string[] = [];
    const extra = (address: string): Promise<AliasTarget[]> => {
      asked.push(address);
      return Promise.resolve(
        address === "x@ex.test" ? [{ kind: "address", address: "alice@ex.test" }] : [],
      );
    };
    const r = resolver(domain("ex.test", ["alice"], "all: a, b\na: x\nb: x, a\n"));
    assert.deepEqual(await r.resolve("all@ex.test", extra), [mailbox("alice", "ex.test")]);
    assert.deepEqual(asked.sort(), [
      "a@ex.test",
      "alice@ex.test",
      "all@ex.test",
      "b@ex.test",
      "x@ex.test",
    ]);
  });

  /**
   * Aliases in `levels` levels of `width` names, each name listing every
   * name of the next level (a diamond lattice: width^levels paths), the
   * last level users; with `backToTop`, each name also lists the top, a
   * loop on every path.
   */
  function lattice(levels: number, width: number, backToTop = false): RecipientResolver {
    const name = (l: number, k: number) => `l${l}n${k}`;
    const row = (l: number) => Array.from({ length: width }, (_, k) => name(l, k));
    const lines = [`top: ${row(1).join(", ")}`];
    for (let l = 1; l < levels; l++) {
      for (const n of row(l)) {
        lines.push(`${n}: ${[...row(l + 1), ...backToTop ? ["top"] : []].join(", ")}`);
      }
    }
    return resolver(domain("ex.test", row(levels), lines.join("\n")));
  }

  it("resolve() expands a diamond of nested aliases once per name, not once per path", async () => {
    // 4^9 = 262,144 paths, 37 names: more paths than MAX_ALIAS_LOOKUPS.
    let asked = 0;
    const count = (): Promise<undefined> => {
      asked++;
      return Promise.resolve(undefined);
    };
    const found = await lattice(9, 4).resolve("top@ex.test", count);
    assertSameDestinations(found, [0, 1, 2, 3].map((k) => mailbox(`l9n${k}`, "ex.test")));
    assert.equal(asked, 1 + 9 * 4);
  });

  it("resolve() still throws AliasDepthError for a diamond whose shared part nests too deep", async () => {
    // short: s1 -> ... ; long: x1 -> x2 -> x3 -> s1: the second way to s1 is deeper.
    const chain = Array.from({ length: 8 }, (_, i) => `s${i}: s${i + 1}`);
    const r = resolver(
      domain("ex.test", ["s8"], [...chain, "top: s0, x1", "x1: x2", "x2: x3", "x3: s0"].join("\n")),
    );
    // top -> s0 ... s8 is 9 levels; top -> x1 -> x2 -> x3 -> s0 ... s8 is 12.
    await assert.rejects(r.resolve("top@ex.test"), AliasDepthError);
    assert.deepEqual(await r.resolve("s0@ex.test"), [mailbox("s8", "ex.test")]);
  });

  it("resolve() throws AliasExpansionLimitError past MAX_ALIAS_LOOKUPS addresses, when loops multiply the paths", async () => {
    assert.equal(MAX_ALIAS_LOOKUPS, 100_000);
    // Every path also leads back to the top, so no name is expanded once for all.
    await assert.rejects(lattice(9, 4, true).resolve("top@ex.test"), (err: unknown) => {
      assert.ok(err instanceof AliasExpansionLimitError, String(err));
      assert.match(err.message, /"top@ex\.test": more than 100000 addresses looked up/);
      return true;
    });
    // Below the limit, the loops end in the top's own mailbox.
    const found = await lattice(3, 4, true).resolve("top@ex.test");
    assertSameDestinations(found, [
      mailbox("top", "ex.test"),
      ...[0, 1, 2, 3].map((k) => mailbox(`l3n${k}`, "ex.test")),
    ]);
  });

  it("resolve() uses the catch-all only when the name is not a user", async () => {
    const r = resolver(domain("ex.test", ["alice", "bob"], "*: bob\n"));
    assert.deepEqual(await r.resolve("alice@ex.test"), [mailbox("alice", "ex.test")]);
    assert.deepEqual(await r.resolve("stranger@ex.test"), [mailbox("bob", "ex.test")]);
  });

  it("resolve() prefers an explicit alias over the catch-all", async () => {
    const r = resolver(domain("ex.test", ["bob", "carol"], "*: bob\nsales: carol\n"));
    assert.deepEqual(await r.resolve("sales@ex.test"), [mailbox("carol", "ex.test")]);
  });

  it("resolve() does not send postmaster to the catch-all", async () => {
    const r = resolver(domain("ex.test", ["bob"], "*: bob\n"));
    assert.deepEqual(await r.resolve("postmaster@ex.test"), [mailbox("postmaster", "ex.test")]);
  });

  it("resolve() follows a postmaster alias when one is defined", async () => {
    const r = resolver(domain("ex.test", ["bob"], "postmaster: bob\n"));
    assert.deepEqual(await r.resolve("postmaster@ex.test"), [mailbox("bob", "ex.test")]);
  });

  it("resolve() gives each name its own mailbox when the domain is any_user", async () => {
    const r = resolver(domain("any.test", [], "", true));
    assert.deepEqual(await r.resolve("Some.One+x@any.test"), [mailbox("someone", "any.test")]);
  });

  it("resolve() returns a remote destination when the domain is not local", async () => {
    const r = resolver(domain("ex.test", []));
    assert.deepEqual(await r.resolve("Friend@Remote.TEST"), [
      { kind: "remote", address: "Friend@remote.test" },
    ]);
  });

  it("resolve() returns a pipe destination naming the alias", async () => {
    const r = resolver(domain("ex.test", [], "tubo: | /bin/filter --to tubo\n"));
    assert.deepEqual(await r.resolve("tubo@ex.test"), [
      { kind: "pipe", argv: ["/bin/filter", "--to", "tubo"], alias: "tubo@ex.test" },
    ]);
  });

  it("resolve() finds an alias whose name has a drop character", async () => {
    const r = resolver(domain("ex.test", ["alice"], "first.last: alice\n"));
    assert.equal(r.exists("first.last@ex.test"), true);
    assert.deepEqual(await r.resolve("first.last@ex.test"), [mailbox("alice", "ex.test")]);
  });

  it("resolve() removes duplicates when several aliases reach the same place", async () => {
    const r = resolver(
      domain(
        "ex.test",
        ["alice"],
        [
          "all: one, two, Alice, alice+x, ext@remote.test, EXT@Remote.test",
          "one: alice, p",
          "two: alice, p",
          "p: | /bin/cat",
        ].join("\n"),
      ),
    );
    assertSameDestinations(await r.resolve("all@ex.test"), [
      mailbox("alice", "ex.test"),
      { kind: "pipe", argv: ["/bin/cat"], alias: "p@ex.test" },
      { kind: "remote", address: "ext@remote.test" },
    ]);
  });
});

describe("RecipientResolver.remoteDomainsOf", () => {
  it("remoteDomainsOf() names the domains an alias forwards to, through nested aliases and across local domains", () => {
    const r = resolver(
      domain(
        "ex.test",
        ["alice"],
        [
          "team: alice, leads, x@Far.TEST, p",
          "leads: y@far.test, z@b.test",
          "p: | /bin/cat",
          "*: catch@catch.test",
        ].join("\n"),
      ),
      domain("b.test", [], "z: w@near.test\n"),
    );
    assert.deepEqual([...r.remoteDomainsOf("Team+x@ex.test")].sort(), [
      "far.test",
      "near.test",
    ]);
    assert.deepEqual(r.remoteDomainsOf("alice@ex.test"), []);
    assert.deepEqual(r.remoteDomainsOf("p@ex.test"), []);
    assert.deepEqual(r.remoteDomainsOf("stranger@ex.test"), ["catch.test"]);
    assert.deepEqual(r.remoteDomainsOf("postmaster@ex.test"), []);
    assert.deepEqual(r.remoteDomainsOf("someone@other.test"), ["other.test"]);
  });

  it("remoteDomainsOf() ends loops, and looks no deeper than resolve() may go", () => {
    const lines = Array.from({ length: 11 }, (_, i) => `a${i}: a${i + 1}, r${i}@r${i}.test`);
    const r = resolver(
      domain("ex.test", [], [...lines, "loop: loop, back", "back: loop"].join("\n")),
    );
    // a0 .. a10 are levels 0 to 10; r11's alias a11 would be level 11.
    const found = r.remoteDomainsOf("a0@ex.test");
    assert.equal(found.length, 10);
    assert.ok(found.includes("r9.test") && !found.includes("r10.test"), found.join(","));
    assert.deepEqual(r.remoteDomainsOf("loop@ex.test"), []);
  });

  it("remoteDomainsOf() does not ask the hook and expands a diamond once per name", () => {
    const names = (l: number) => Array.from({ length: 4 }, (_, k) => `l${l}n${k}`);
    const lines = [`top: ${names(1).join(", ")}`];
    for (let l = 1; l < 9; l++) {
      for (const n of names(l)) lines.push(`${n}: ${names(l + 1).join(", ")}`);
    }
    for (const n of names(9)) lines.push(`${n}: ${n}@far.test`);
    const r = resolver(domain("ex.test", [], lines.join("\n")));
    assert.deepEqual(r.remoteDomainsOf("top@ex.test"), ["far.test"]);
    // Asked again: the same answer, remembered.
    assert.equal(r.remoteDomainsOf("top@ex.test"), r.remoteDomainsOf("top@ex.test"));
  });
});
