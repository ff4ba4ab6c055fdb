import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type FilterOutput, HeaderFilter } from "../../../src/smtp/header_filter.ts";
import { applyOutput, filterBytes } from "./filter_helpers.ts";
import { ourAuthenticationResults } from "../../../src/smtp/authres_claim.ts";
import { concatBytes } from "../../../src/bytes.ts";

const encoder = new TextEncoder();

function run(
  text: string,
  cuts: number[],
  host = "mx.ours.test",
): { out: string; dropped: number } {
  const filter = new HeaderFilter(ourAuthenticationResults(host));
  const { out, dropped } = filterBytes(filter, encoder.encode(text), cuts);
  return { out: new TextDecoder().decode(out), dropped };
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

  it("push() judges fields of any length: ours after a 64 KiB field, and a long one of ours", () => {
    const other = "X-Long: " + "x".repeat(100_000) + "\r\n";
    const long = "Authentication-Results: mx.ours.test;" + " x".repeat(40_000) + "\r\n";
    const text = other + long + "Authentication-Results: mx.ours.test; later\r\n\r\nbody";
    assert.deepEqual(run(text, [1000, 50_000, 120_000]), { out: other + "\r\nbody", dropped: 2 });
  });

  it("push() writes a field on while it is undecided past the hold, and takes it back when dropped", () => {
    const comment = "(" + "c".repeat(100_000) + ")";
    const ours = `Authentication-Results: ${comment} mx.ours.test; spf=pass\r\n`;
    const theirs = `Authentication-Results: ${comment} other.test; spf=pass\r\n`;
    const text = ours + theirs + "\r\nbody\r\n";
    const filter = new HeaderFilter(ourAuthenticationResults("mx.ours.test"));
    const bytes = encoder.encode(text);
    const outputs: FilterOutput[] = [];
    for (let i = 0; i < bytes.byteLength; i += 8192) {
      outputs.push(...filter.push(bytes.subarray(i, i + 8192)));
    }
    outputs.push(...filter.end());
    const retracts = outputs.filter((o) => !(o instanceof Uint8Array));
    assert.equal(retracts.length, 1, "the spilled field of ours is taken back once");
    const written: Uint8Array[] = [];
    applyOutput(written, outputs);
    assert.equal(new TextDecoder().decode(concatBytes(written)), theirs + "\r\nbody\r\n");
  });

  it("push() copes with a client that trickles a long undecided field one byte at a time", () => {
    const comment = "(" + "c".repeat(100_000) + ")";
    const text = `Authentication-Results: ${comment} mx.ours.test; x\r\n` +
      `Authentication-Results: ${comment} other.test; x\r\n\r\nbody`;
    const filter = new HeaderFilter(ourAuthenticationResults("mx.ours.test"));
    const bytes = encoder.encode(text);
    const written: Uint8Array[] = [];
    let most = 0;
    for (let i = 0; i < bytes.byteLength; i++) {
      const parts = filter.push(bytes.subarray(i, i + 1));
      most = Math.max(most, parts.length);
      applyOutput(written, parts);
    }
    applyOutput(written, filter.end());
    const expected = `Authentication-Results: ${comment} other.test; x\r\n\r\nbody`;
    assert.ok(new TextDecoder().decode(concatBytes(written)) === expected, "output differs");
    assert.ok(most <= 300, `${most} pieces in one output`);
  });

  it("push() treats an empty line cut between its CR and LF as the end of the header", () => {
    const text = "Subject: x\r\n\r\nAuthentication-Results: mx.ours.test; body\r\n";
    const at = text.indexOf("\r\n\r\n") + 2;
    assert.deepEqual(run(text, [at + 1]), { out: text, dropped: 0 });
  });

  it("push() handles LF-only line endings", () => {
    const text = "Authentication-Results: mx.ours.test; x\nSubject: y\n\nbody\n";
    assert.deepEqual(run(text, [7]), { out: "Subject: y\n\nbody\n", dropped: 1 });
  });
});

describe("ourAuthenticationResults", () => {
  const judges = ourAuthenticationResults("Mx.Ours.Test");
  /** True when the whole field, fed in one piece, is judged a claim of ours. */
  const ours = (field: string) => {
    const judge = judges();
    return (judge.feed(encoder.encode(field)) ?? judge.end()) === "drop";
  };

  it("ourAuthenticationResults() matches our authserv-id in any case, quoted or after a comment", () => {
    assert.equal(ours("Authentication-Results: mx.ours.test; spf=pass"), true);
    assert.equal(ours('Authentication-Results: "mx.ours.test"; none'), true);
    assert.equal(ours('Authentication-Results: "mx.ours\\.test"; none'), true);
    assert.equal(ours("Authentication-Results: (c) mx.ours.test 1; none"), true);
    assert.equal(ours("Authentication-Results:\r\n mx.ours.test; none"), true);
    assert.equal(ours("AUTHENTICATION-RESULTS : MX.Ours.TEST(c);none"), true);
    assert.equal(ours("Authentication-Results: mx.ours.test"), true);
  });

  it("ourAuthenticationResults() sees through nested comments and quoted-pairs in them", () => {
    assert.equal(ours("Authentication-Results: (a (b) c) mx.ours.test; spf=pass"), true);
    assert.equal(
      ours("Authentication-Results: (a (b (c) \\) d) e)\r\n\t(f) mx.ours.test; x"),
      true,
    );
    assert.equal(ours("Authentication-Results: (a \\( b) mx.ours.test; spf=pass"), true);
    assert.equal(ours("Authentication-Results: (a (b) mx.ours.test) other.test; x"), false);
  });

  it("ourAuthenticationResults() leaves other servers' fields and other headers alone", () => {
    assert.equal(ours("Authentication-Results: mx.ours.test.evil; none"), false);
    assert.equal(ours("Authentication-Results: xmx.ours.test; none"), false);
    assert.equal(ours('Authentication-Results: "mx.ours.test "; none'), false);
    assert.equal(ours("Authentication-Results: other.test; spf=pass"), false);
    assert.equal(ours("Authentication-Results: (mx.ours.test) other.test; spf=pass"), false);
    assert.equal(ours("Authentication-Results: ; mx.ours.test"), false);
    assert.equal(ours("X-Authentication-Results: mx.ours.test; none"), false);
    assert.equal(ours("ARC-Authentication-Results: i=1; mx.ours.test; none"), false);
    assert.equal(ours("Authentication-Results-X: mx.ours.test; none"), false);
  });
});
