import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AliasSyntaxError, parseAliases, parseTargets } from "../../../src/aliases/mod.ts";

/** Runs `fn` and returns the AliasSyntaxError it throws. */
function syntaxError(fn: () => unknown): AliasSyntaxError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AliasSyntaxError, `expected AliasSyntaxError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected an AliasSyntaxError");
}

describe("parseAliases", () => {
  it("parseAliases() skips comments and blank lines when the file has them", () => {
    const table = parseAliases("# a comment\n\n   \n  # indented comment\npepe: jose\n", "ex.test");
    assert.deepEqual([...table.keys()], ["pepe"]);
  });

  it("parseAliases() puts a bare target in the file's domain when it has no @", () => {
    const table = parseAliases("pepe: jose\n", "ex.test");
    assert.deepEqual(table.get("pepe"), [{ kind: "address", address: "jose@ex.test" }]);
  });

  it("parseAliases() keeps remote targets and splits lists on commas", () => {
    const table = parseAliases("flowers: rose@backgarden, lilly@pond ,tulip\n", "ex.test");
    assert.deepEqual(table.get("flowers"), [
      { kind: "address", address: "rose@backgarden" },
      { kind: "address", address: "lilly@pond" },
      { kind: "address", address: "tulip@ex.test" },
    ]);
  });

  it("parseAliases() splits a pipe command on white space when the target starts with |", () => {
    const table = parseAliases("tubo: |  /usr/local/bin/filter\t--to   tubo \n", "ex.test");
    assert.deepEqual(table.get("tubo"), [
      { kind: "pipe", argv: ["/usr/local/bin/filter", "--to", "tubo"] },
    ]);
  });

  it("parseAliases() accepts * as a catch-all name", () => {
    const table = parseAliases("*: catchall\n", "ex.test");
    assert.deepEqual(table.get("*"), [{ kind: "address", address: "catchall@ex.test" }]);
  });

  it("parseAliases() lower-cases names when they have capitals", () => {
    const table = parseAliases("PePe: Jose\r\n", "ex.test");
    assert.ok(table.has("pepe"));
    assert.ok(!table.has("PePe"));
  });

  it("parseAliases() accepts CRLF line endings", () => {
    const table = parseAliases("a: b\r\nc: d\r\n", "ex.test");
    assert.deepEqual([...table.keys()], ["a", "c"]);
  });

  it("parseAliases() returns an empty table when the file is empty", () => {
    assert.equal(parseAliases("", "ex.test").size, 0);
  });

  it("parseAliases() reports the line number when a line has no colon", () => {
    const err = syntaxError(() => parseAliases("# c\nok: fine\nbroken line\n", "ex.test"));
    assert.equal(err.line, 3);
    assert.equal(err.name, "AliasSyntaxError");
  });

  it("parseAliases() rejects a line that starts with a colon", () => {
    const err = syntaxError(() => parseAliases(": target\n", "ex.test"));
    assert.equal(err.line, 1);
  });

  it("parseAliases() reports the line number when the right-hand side is empty", () => {
    const err = syntaxError(() => parseAliases("a: b\n\nempty:   \n", "ex.test"));
    assert.equal(err.line, 3);
    assert.match(err.message, /"empty" has no targets/);
  });

  it("parseAliases() reports the second line when a name is defined twice", () => {
    const err = syntaxError(() => parseAliases("dup: a\nother: b\nDUP: c\n", "ex.test"));
    assert.equal(err.line, 3);
    assert.match(err.message, /"dup" is defined twice/);
  });

  it("parseAliases() rejects a name with @ when it names a domain", () => {
    const err = syntaxError(() => parseAliases("\nuser@ex.test: other\n", "ex.test"));
    assert.equal(err.line, 2);
    assert.match(err.message, /user@ex\.test/);
  });

  it("parseAliases() rejects a name with spaces or commas", () => {
    assert.equal(syntaxError(() => parseAliases("a b: c\n", "ex.test")).line, 1);
    assert.equal(syntaxError(() => parseAliases("x: y\na,b: c\n", "ex.test")).line, 2);
  });

  it("parseAliases() rejects a pipe with no command", () => {
    const err = syntaxError(() => parseAliases("a: b\np: |   \n", "ex.test"));
    assert.equal(err.line, 2);
  });

  it("parseAliases() rejects a target that is only commas", () => {
    assert.equal(syntaxError(() => parseAliases("a: , ,\n", "ex.test")).line, 1);
  });

  it("parseAliases() rejects targets with spaces or a dangling @", () => {
    assert.equal(syntaxError(() => parseAliases("a: b c\n", "ex.test")).line, 1);
    assert.equal(syntaxError(() => parseAliases("a: @remote\n", "ex.test")).line, 1);
    assert.equal(syntaxError(() => parseAliases("a: user@\n", "ex.test")).line, 1);
  });
});

describe("parseTargets", () => {
  it("parseTargets() uses the given line number when it throws", () => {
    const err = syntaxError(() => parseTargets("bad target", "ex.test", 7));
    assert.equal(err.line, 7);
  });

  it("parseTargets() parses a pipe as a single target when the text starts with |", () => {
    assert.deepEqual(parseTargets("| cmd a, b", "ex.test"), [
      { kind: "pipe", argv: ["cmd", "a,", "b"] },
    ]);
  });
});
