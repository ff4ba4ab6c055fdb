import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  HeaderGuard,
  headerRefusal,
  type HeaderViolation,
  MAX_HEADER_BYTES,
  MAX_HEADER_LINES,
} from "../../../src/smtp/header_guard.ts";

const encode = (text: string) => new TextEncoder().encode(text);

/** The guard's verdict on `text` cut into chunks at `cuts`. */
function scan(
  text: string,
  cuts: number[] = [],
  limits = { lines: MAX_HEADER_LINES, bytes: MAX_HEADER_BYTES },
): HeaderViolation | undefined {
  const bytes = encode(text);
  const guard = new HeaderGuard(limits);
  let start = 0;
  for (const cut of [...cuts, bytes.byteLength]) {
    const violation = guard.push(bytes.subarray(start, cut));
    if (violation) return violation;
    start = cut;
  }
  return guard.end();
}

/** The verdict is the same wherever the message is cut in two or three. */
function everyCut(
  text: string,
  limits?: { lines: number; bytes: number },
): HeaderViolation | undefined {
  const whole = scan(text, [], limits);
  const length = encode(text).byteLength;
  for (let a = 0; a <= length; a++) {
    assert.deepEqual(scan(text, [a], limits), whole, `cut at ${a}: ${JSON.stringify(text)}`);
    for (let b = a; b <= Math.min(length, a + 3); b++) {
      assert.deepEqual(scan(text, [a, b], limits), whole, `cuts at ${a}, ${b}`);
    }
  }
  return whole;
}

describe("HeaderGuard", () => {
  it("accepts a header section with CRLF or bare LF line ends", () => {
    assert.equal(everyCut("From: a@b.test\r\nSubject: hi\r\n folded\r\n\r\nbody\r\n"), undefined);
    assert.equal(everyCut("From: a@b.test\nSubject: hi\n folded\n\nbody\n"), undefined);
    assert.equal(everyCut("From: a@b.test\r\n\nbody\r\n"), undefined);
    assert.equal(everyCut("From: a@b.test\n\r\nbody\r\n"), undefined);
    assert.equal(everyCut("\r\nno header at all\r\n"), undefined);
    assert.equal(everyCut(""), undefined);
  });

  it("refuses a bare CR anywhere in the header section", () => {
    const bare = { kind: "bare_cr" };
    // The audit's cases: a From and an Authentication-Results hidden behind one.
    assert.deepEqual(
      everyCut("X-Note: hi\rFrom: <ceo@bank.test>\r\nFrom: <boss@probe.example>\r\n\r\nb\r\n"),
      bare,
    );
    assert.deepEqual(
      everyCut("Subject: invoice\rAuthentication-Results: mx.example.test; dmarc=pass\r\n\r\n"),
      bare,
    );
    assert.deepEqual(everyCut("Subject: x\r\r\nFrom: a@b.test\r\n\r\n"), bare);
    assert.deepEqual(everyCut("Subject: x\r\n\rFrom: a@b.test\r\n\r\n"), bare);
    assert.deepEqual(everyCut("\rFrom: a@b.test\r\n\r\n"), bare);
    assert.deepEqual(everyCut("Subject: x\r\n \r folded\r\n\r\n"), bare);
    // A CR that ends the message (all header) is a bare one too.
    assert.deepEqual(everyCut("Subject: x\r"), bare);
    assert.deepEqual(everyCut("Subject: x\r\n\r"), bare);
  });

  it("leaves the body alone: bare CRs and any number of lines there are not its business", () => {
    const body = "a\rb\r.\r\rFrom: x@y.test\r\n" + "line\r\n".repeat(50);
    assert.equal(everyCut("Subject: x\r\n\r\n" + body, { lines: 2, bytes: 20 }), undefined);
    assert.equal(everyCut("Subject: x\n\n" + body, { lines: 2, bytes: 20 }), undefined);
  });

  it("allows exactly the line limit, and refuses one line more, folds counting", () => {
    const limits = { lines: 4, bytes: 1000 };
    const four = "X-Big: a\r\n b\r\n b\r\n b\r\n";
    assert.equal(everyCut(four + "\r\nbody\r\n", limits), undefined);
    assert.equal(everyCut(four.replaceAll("\r\n", "\n") + "\nbody\n", limits), undefined);
    assert.deepEqual(everyCut(four + " b\r\n\r\nbody\r\n", limits), { kind: "lines", limit: 4 });
    // Lines that start no field count too.
    assert.deepEqual(everyCut("S: s\r\n\x80\r\nx\r\ny\r\nz\r\n\r\n", limits), {
      kind: "lines",
      limit: 4,
    });
    // A message that is all header: its last line counts, terminated or not.
    assert.equal(everyCut(four, limits), undefined);
    assert.deepEqual(everyCut(four + " b", limits), { kind: "lines", limit: 4 });
  });

  it("allows exactly the byte limit (the empty line aside), and refuses one byte more", () => {
    const limits = { lines: 100, bytes: 20 };
    const twenty = "Subject: 0123456789\r\n".slice(1); // 20 bytes
    assert.equal(encode(twenty).byteLength, 20);
    assert.equal(everyCut(twenty + "\r\nbody\r\n", limits), undefined);
    assert.equal(everyCut(twenty + "\nbody\r\n", limits), undefined);
    assert.deepEqual(everyCut("S" + twenty + "\r\nbody\r\n", limits), {
      kind: "bytes",
      limit: 20,
    });
    // One long line, never ended: refused as soon as it is over the limit.
    const guard = new HeaderGuard(limits);
    assert.equal(guard.push(encode("X: " + "y".repeat(17))), undefined);
    assert.deepEqual(guard.push(encode("y")), { kind: "bytes", limit: 20 });
  });

  it("has limits that real mail stays under, and that keep mailauth's parse short", () => {
    // README "Hostile clients" gives the measurements behind these numbers.
    assert.equal(MAX_HEADER_LINES, 3000);
    assert.equal(MAX_HEADER_BYTES, 262_144);
    const real = [
      ...Array.from({ length: 40 }, (_, i) => `Received: from relay${i}.test\r\n\tby mx.test; x`),
      `To: ${Array.from({ length: 500 }, (_, i) => `user${i}@example.test`).join(",\r\n ")}`,
      "Subject: a long list",
      "",
      "body",
    ].join("\r\n");
    assert.equal(scan(real), undefined);
  });

  it("maps each violation to its reply and log reason", () => {
    assert.deepEqual(headerRefusal({ kind: "lines", limit: 3000 }), {
      reason: "header_too_big",
      reply: {
        code: 552,
        enhanced: "5.3.4",
        text: "Message header section exceeds the limit of 3000 lines",
      },
    });
    assert.deepEqual(
      headerRefusal({ kind: "bytes", limit: 262144 }).reply.text,
      "Message header section exceeds the limit of 262144 bytes",
    );
    assert.deepEqual(headerRefusal({ kind: "bare_cr" }), {
      reason: "bare_cr",
      reply: {
        code: 550,
        enhanced: "5.6.0",
        text: "Error: bare <CR> received in the message header",
      },
    });
  });
});
