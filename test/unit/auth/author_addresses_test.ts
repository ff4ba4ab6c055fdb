import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { authorAddresses, withoutCfws } from "../../../src/auth/author_addresses.ts";

describe("authorAddresses", () => {
  it("finds the domain behind comments and white space in an addr-spec", () => {
    for (
      const from of [
        "<ceo@(x)rej.test>",
        "<ceo@rej (x).test>",
        "<ceo@rej.(a (b\\) c))test>",
        "<ceo(x)@rej.test>",
        "<ceo @ rej.test (x)>",
        "<ceo@\r\n rej.test>",
        "ceo@ (x) rej.test",
      ]
    ) {
      assert.deepEqual(authorAddresses([`From: ${from}`]), ["ceo@rej.test"], from);
    }
  });

  it("keeps quoted strings, and reads every mailbox of lists, groups and fields", () => {
    assert.deepEqual(
      authorAddresses([
        'From: "A (b) c" <"x y"@c.test>, d@e.test',
        "From: Board: <a@b.test>, c (d) @ e.test;",
      ]),
      ['"x y"@c.test', "d@e.test", "a@b.test", "c@e.test"],
    );
  });

  it("withoutCfws leaves parentheses inside quoted strings alone", () => {
    assert.equal(withoutCfws(' "a (b)" <x @ y . test>'), ' "a (b)" <x@y.test>');
  });
});
