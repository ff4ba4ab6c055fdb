import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  hasDeliveredTo,
  HEADER_LIMITS,
  HeaderGuard,
  type HeaderLimits,
  headerRefusal,
  type HeaderViolation,
  MAX_HEADER_BYTES,
  MAX_HEADER_LINES,
  MAX_RECEIVED_FIELDS,
} from "../../../src/smtp/header_guard.ts";

const encode = (text: string) => new TextEncoder().encode(text);

/** The guard's verdict on `text` cut into chunks at `cuts`. */
function scan(
  text: string,
  cuts: number[] = [],
  limits: HeaderLimits = HEADER_LIMITS,
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
  limits?: HeaderLimits,
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
    assert.equal(
      everyCut("Subject: x\r\n\r\n" + body, { lines: 2, bytes: 20, received: 100 }),
      undefined,
    );
    assert.equal(
      everyCut("Subject: x\n\n" + body, { lines: 2, bytes: 20, received: 100 }),
      undefined,
    );
  });

  it("allows exactly the line limit, and refuses one line more, folds counting", () => {
    const limits = { lines: 4, bytes: 1000, received: 100 };
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
    const limits = { lines: 100, bytes: 20, received: 100 };
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

  it("allows exactly the Received limit, and refuses one field more, in any case", () => {
    const limits = { lines: 100, bytes: 1000, received: 3 };
    // White space before the colon is the obsolete syntax (RFC 5322 section 4.5.6).
    const three = "Received: from a\r\n\tby b\r\nRECEIVED : from c\r\nreceived\t: from d\r\n";
    assert.equal(everyCut(three + "Subject: x\r\n\r\nbody\r\n", limits), undefined);
    assert.equal(everyCut(three.replaceAll("\r\n", "\n") + "\nbody\n", limits), undefined);
    const hops = { kind: "hops", limit: 3 };
    assert.deepEqual(everyCut(three + "ReCeIvEd: from e\r\n\r\nbody\r\n", limits), hops);
    assert.deepEqual(everyCut(three + "Received:", limits), hops, "all header, unterminated");
    assert.deepEqual(everyCut("Subject: x\n" + three + "Received:x\n\nbody\n", limits), hops);
  });

  it("counts Received only at the start of a field: not in a fold, another name or the body", () => {
    const limits = { lines: 100, bytes: 1000, received: 1 };
    const one = "Received: from a\r\n";
    const others = [
      "X-Received: from b\r\n",
      "Received-SPF: pass\r\n",
      "Receivedx: y\r\n",
      "Receive: y\r\n",
      " Received: in a fold\r\n",
      "\tReceived: in a fold\r\n",
      "Subject: Received: x\r\n",
      "Received\r\n",
    ].join("");
    assert.equal(everyCut(one + others + "\r\nReceived: in the body\r\n", limits), undefined);
    assert.equal(everyCut(others + one + "\r\n", limits), undefined);
  });

  it("takes 100 Received fields, as RFC 5321 section 6.3 asks at least, and refuses 101", () => {
    assert.equal(MAX_RECEIVED_FIELDS, 100);
    const field = (i: number) => `Received: from h${i}.test by h${i + 1}.test; x\r\n`;
    const hundred = Array.from({ length: 100 }, (_, i) => field(i)).join("");
    const tail = "Subject: far\r\n\r\nbody\r\n";
    assert.equal(scan(hundred + tail), undefined);
    assert.deepEqual(scan(hundred + field(100) + tail, [7, 1000, 4321]), {
      kind: "hops",
      limit: 100,
    });
    // Limits that leave it out keep it.
    const sizeOnly = { lines: 1000, bytes: 100_000 };
    assert.deepEqual(scan(hundred + field(100) + tail, [], sizeOnly), { kind: "hops", limit: 100 });
  });

  it("notes a Delivered-To field at the start of a field, in any case, wherever the chunks end", () => {
    /** Whether the guard saw the field, for every cut of `text` in two and three. */
    const seen = (text: string): boolean => {
      const bytes = encode(text);
      const verdicts = new Set<boolean>();
      for (let a = 0; a <= bytes.byteLength; a++) {
        for (let b = a; b <= Math.min(bytes.byteLength, a + 3); b++) {
          const guard = new HeaderGuard();
          for (const part of [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]) {
            assert.equal(guard.push(part), undefined);
          }
          assert.equal(guard.end(), undefined);
          verdicts.add(guard.deliveredTo);
        }
      }
      assert.equal(verdicts.size, 1, `the same verdict at every cut: ${JSON.stringify(text)}`);
      return [...verdicts][0]!;
    };
    const tail = "Subject: x\r\n\r\nbody\r\n";
    assert.equal(seen("Delivered-To: a@b.test\r\n" + tail), true);
    assert.equal(seen("Received: from a\r\nDELIVERED-TO:<a@b.test>\r\n" + tail), true);
    assert.equal(seen("Subject: x\ndelivered-to \t: a@b.test\n\nbody\n"), true);
    assert.equal(seen("From: a@b.test\r\nDelivered-To: a@b.test"), true, "all header");
    for (
      const other of [
        "X-Delivered-To: a@b.test\r\n",
        "Delivered-Tox: a@b.test\r\n",
        "Delivered: a@b.test\r\n",
        "Delivered-To\r\n",
        " Delivered-To: in a fold\r\n",
        "Subject: Delivered-To: a@b.test\r\n",
        "Deliveredto: a@b.test\r\n",
      ]
    ) {
      assert.equal(seen("Received: from a\r\n" + other + tail), false, other);
    }
    assert.equal(seen("Subject: x\r\n\r\nDelivered-To: in the body\r\n"), false);
    // Received fields still count beside it.
    const limits = { lines: 100, bytes: 1000, received: 1 };
    assert.deepEqual(
      everyCut("Delivered-To: a@b.test\r\nReceived: a\r\nReceived: b\r\n\r\n", limits),
      { kind: "hops", limit: 1 },
    );
  });

  it("finds a Delivered-To field among a hook's header lines", () => {
    assert.equal(hasDeliveredTo(encode("X-Spam: no\r\nDelivered-To: a@b.test\r\n")), true);
    assert.equal(hasDeliveredTo(encode("X-Spam: no\r\nX-Delivered-To: a@b.test\r\n")), false);
    assert.equal(hasDeliveredTo(encode("")), false);
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
    assert.deepEqual(headerRefusal({ kind: "hops", limit: 100 }), {
      reason: "too_many_hops",
      reply: {
        code: 554,
        enhanced: "5.4.6",
        text: "Too many hops: over 100 Received header fields, a mail loop",
      },
    });
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
