import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HeaderFilter, ourAuthenticationResults } from "../../../src/smtp/header_filter.ts";

const encoder = new TextEncoder();

/** Runs `text` through a filter in chunks cut at `cuts`; returns the output text. */
function run(
  text: string,
  cuts: number[],
  host = "mx.ours.test",
): { out: string; dropped: number } {
  const filter = new HeaderFilter(ourAuthenticationResults(host));
  const bytes = encoder.encode(text);
  const parts: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.byteLength]) {
    parts.push(...filter.push(bytes.subarray(start, cut)));
    start = cut;
  }
  parts.push(...filter.end());
  const out = new TextDecoder().decode(
    parts.reduce((acc, p) => {
      const joined = new Uint8Array(acc.byteLength + p.byteLength);
      joined.set(acc);
      joined.set(p, acc.byteLength);
      return joined;
    }, new Uint8Array(0)),
  );
  return { out, dropped: filter.dropped };
}

const MESSAGE = [
  "Received: from a by b",
  "Authentication-Results: mx.ours.test; spf=pass smtp.mailfrom=x@forged.test",
  "Authentication-Results: other.test;",
  "\tdkim=pass header.d=example.test",
  "authentication-results:  (comment) MX.OURS.TEST 1;",
  " dmarc=pass",
  "Subject: hi",
  "",
  "Authentication-Results: mx.ours.test; in the body, kept",
  "",
].join("\r\n");

const EXPECTED = [
  "Received: from a by b",
  "Authentication-Results: other.test;",
  "\tdkim=pass header.d=example.test",
  "Subject: hi",
  "",
  "Authentication-Results: mx.ours.test; in the body, kept",
  "",
].join("\r\n");

describe("HeaderFilter", () => {
  it("push() removes our own Authentication-Results fields, folds included, and only in the header", () => {
    assert.deepEqual(run(MESSAGE, []), { out: EXPECTED, dropped: 2 });
  });

  it("push() gives the same result wherever the chunks are cut", () => {
    const length = encoder.encode(MESSAGE).byteLength;
    for (let cut = 1; cut < length; cut++) {
      assert.deepEqual(run(MESSAGE, [cut]), { out: EXPECTED, dropped: 2 }, `cut at ${cut}`);
    }
    assert.deepEqual(
      run(MESSAGE, Array.from({ length: length - 1 }, (_, i) => i + 1)),
      { out: EXPECTED, dropped: 2 },
    );
  });

  it("push() passes a message without our fields through unchanged", () => {
    const text = "From: a@b\r\nSubject: x\r\n\r\nbody\r\n";
    assert.deepEqual(run(text, [3, 10]), { out: text, dropped: 0 });
  });

  it("end() judges a message that has no empty line after its header", () => {
    const text = "Subject: x\r\nAuthentication-Results: mx.ours.test; spf=pass";
    assert.deepEqual(run(text, [5]), { out: "Subject: x\r\n", dropped: 1 });
  });

  it("push() stops filtering, losing nothing, when a field is too long to hold", () => {
    const long = "Authentication-Results: mx.ours.test;" + " x".repeat(40_000) + "\r\n";
    const text = long + "Authentication-Results: mx.ours.test; later\r\n\r\nbody";
    assert.deepEqual(run(text, [1000, 50_000]), { out: text, dropped: 0 });
  });

  it("push() handles LF-only line endings", () => {
    const text = "Authentication-Results: mx.ours.test; x\nSubject: y\n\nbody\n";
    assert.deepEqual(run(text, [7]), { out: "Subject: y\n\nbody\n", dropped: 1 });
  });
});

describe("ourAuthenticationResults", () => {
  const ours = ourAuthenticationResults("Mx.Ours.Test");

  it("ourAuthenticationResults() matches our authserv-id in any case, quoted or after a comment", () => {
    assert.equal(ours("Authentication-Results: mx.ours.test; spf=pass"), true);
    assert.equal(ours('Authentication-Results: "mx.ours.test"; none'), true);
    assert.equal(ours("Authentication-Results: (c) mx.ours.test 1; none"), true);
    assert.equal(ours("Authentication-Results:\r\n mx.ours.test; none"), true);
  });

  it("ourAuthenticationResults() leaves other servers' fields and other headers alone", () => {
    assert.equal(ours("Authentication-Results: mx.ours.test.evil; none"), false);
    assert.equal(ours("Authentication-Results: other.test; spf=pass"), false);
    assert.equal(ours("X-Authentication-Results: mx.ours.test; none"), false);
    assert.equal(ours("ARC-Authentication-Results: i=1; mx.ours.test; none"), false);
  });
});
