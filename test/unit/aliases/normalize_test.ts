import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { lookupKey, normalizeDomain, splitAddress } from "../../../src/aliases/mod.ts";

const OPTIONS = { suffixSeparators: "+", dropCharacters: "." };

describe("lookupKey", () => {
  it("lookupKey() lower-cases the local part", () => {
    assert.equal(lookupKey("Alice", OPTIONS), "alice");
  });

  it("lookupKey() drops the suffix when a separator follows the name", () => {
    assert.equal(lookupKey("alice+tag", OPTIONS), "alice");
    assert.equal(lookupKey("alice+a+b", OPTIONS), "alice");
  });

  it("lookupKey() cuts at the first of several separator characters", () => {
    const options = { suffixSeparators: "+-", dropCharacters: "" };
    assert.equal(lookupKey("a-b+c", options), "a");
    assert.equal(lookupKey("a+b-c", options), "a");
  });

  it("lookupKey() keeps a separator when it is the first character", () => {
    assert.equal(lookupKey("+tag", OPTIONS), "+tag");
    assert.equal(lookupKey("+Tag", { suffixSeparators: "+", dropCharacters: "" }), "+tag");
  });

  it("lookupKey() removes drop characters", () => {
    assert.equal(lookupKey("First.Last", OPTIONS), "firstlast");
    assert.equal(lookupKey("f.i.r.s.t", OPTIONS), "first");
  });

  it("lookupKey() removes drop characters after cutting the suffix", () => {
    assert.equal(lookupKey("first.last+x.y", OPTIONS), "firstlast");
  });

  it("lookupKey() changes nothing else when both option strings are empty", () => {
    const none = { suffixSeparators: "", dropCharacters: "" };
    assert.equal(lookupKey("A.b+C", none), "a.b+c");
  });
});

describe("normalizeDomain", () => {
  it("normalizeDomain() lower-cases the domain", () => {
    assert.equal(normalizeDomain("EXAMPLE.Com"), "example.com");
  });

  it("normalizeDomain() removes one trailing dot", () => {
    assert.equal(normalizeDomain("example.com."), "example.com");
  });

  it("normalizeDomain() turns an internationalized domain into A-labels", () => {
    assert.equal(normalizeDomain("bücher.de"), "xn--bcher-kva.de");
    assert.equal(normalizeDomain("BÜCHER.de."), "xn--bcher-kva.de");
  });

  it("normalizeDomain() leaves an A-label domain as it is", () => {
    assert.equal(normalizeDomain("xn--bcher-kva.de"), "xn--bcher-kva.de");
  });
});

describe("splitAddress", () => {
  it("splitAddress() splits at the last @ and normalizes only the domain", () => {
    assert.deepEqual(splitAddress('"A@B"@Bücher.DE'), {
      local: '"A@B"',
      domain: "xn--bcher-kva.de",
    });
  });

  it("splitAddress() returns an empty domain when there is no @", () => {
    assert.deepEqual(splitAddress("postmaster"), { local: "postmaster", domain: "" });
  });
});
