/**
 * Property tests of the RFC 8601 section 5 filter: generated headers mix
 * valid spellings of fields that claim our authserv-id (any case, folding,
 * nested comments with quoted-pairs, quoted ids, huge comments) with fields
 * that do not (another authserv-id, ours only in a comment or inside
 * another name, other field names, huge fields), in any order, cut into
 * chunks anywhere. Every claim must go and everything else must come out
 * byte for byte. fast-check prints the seed and path of a failure; set
 * FC_SEED to replay one.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import process from "node:process";
import { HeaderFilter } from "../../../src/smtp/header_filter.ts";
import { ourAuthenticationResults } from "../../../src/smtp/authres_claim.ts";
import { filterBytes } from "./filter_helpers.ts";

const OURS = "mx.ours.test";
const SEED = process.env["FC_SEED"] === undefined ? undefined : Number(process.env["FC_SEED"]);
const PARAMS = { numRuns: 150, ...(SEED === undefined ? {} : { seed: SEED }) };

/** One generated header field: its text (ending in the line end) and whether it claims our id. */
interface Field {
  text: string;
  claim: boolean;
}

/** Builds the arbitraries for one line ending (CRLF, or LF as some clients send). */
function arbitraries(eol: string) {
  const wsp = fc.constantFrom(" ", "\t");
  /** RFC 5322 FWS: white space, possibly folded onto the next line. */
  const fws = fc.oneof(
    fc.array(wsp, { minLength: 1, maxLength: 3 }).map((w) => w.join("")),
    fc.tuple(fc.array(wsp, { maxLength: 2 }), fc.array(wsp, { minLength: 1, maxLength: 2 }))
      .map(([a, b]) => a.join("") + eol + b.join("")),
  );
  /** Comment text that tempts a lax parser: our id, semicolons, quotes. */
  const ctext = fc.constantFrom("a", "note", OURS, "other.test;", '"', "spf=pass", "x@y", "=");
  const quotedPair = fc.constantFrom("\\(", "\\)", "\\\\", "\\a", "\\ ", '\\"');
  const { comment } = fc.letrec((tie) => ({
    comment: fc.array(
      fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        ctext,
        quotedPair,
        fws,
        tie("comment") as fc.Arbitrary<string>,
      ),
      { maxLength: 5 },
    ).map((items) => `(${items.join("")})`),
  }));
  /** A comment too long to hold in memory undecided (spilled, then taken back). */
  const hugeComment = fc.integer({ min: 70_000, max: 140_000 }).map((n) =>
    "(" + Array.from({ length: Math.ceil(n / 900) }, () => "c".repeat(900)).join(eol + " ") + ")"
  );
  const cfws = fc.array(fc.oneof(fws, comment, comment), { maxLength: 4 }).map((p) => p.join(""));
  const cfwsMaybeHuge = fc.oneof(
    { weight: 9, arbitrary: cfws },
    { weight: 1, arbitrary: fc.tuple(cfws, hugeComment, cfws).map((p) => p.join("")) },
  );
  const name = fc.tuple(
    fc.mixedCase(fc.constant("Authentication-Results")),
    fc.constantFrom("", "", " ", "\t "), // obsolete: white space before the colon
  ).map(([n, w]) => `${n}${w}:`);
  /** What follows the authserv-id: version, results, "none", folded or not. */
  const rest = fc.tuple(
    fc.constantFrom("", " 1", "\t1"),
    cfws,
    fc.constantFrom(
      "; none",
      ";none",
      "; spf=pass smtp.mailfrom=a@forged.test",
      `;${eol}\tdkim=pass header.d=bank.test;${eol} dmarc=pass`,
      "; spf=pass (comment (nested)) smtp.mailfrom=b@c.test",
    ),
  ).map((p) => p.join(""));
  const quotedOurs = fc.tuple(fc.mixedCase(fc.constant(OURS)), fc.boolean()).map(([id, esc]) =>
    `"${esc ? id.replace(/\./g, "\\.") : id}"`
  );
  const ourId = fc.oneof(fc.mixedCase(fc.constant(OURS)), quotedOurs);
  const claim: fc.Arbitrary<Field> = fc.tuple(name, cfwsMaybeHuge, ourId, rest).map((
    [n, c, id, r],
  ) => ({ text: `${n}${c}${id}${r}${eol}`, claim: true }));

  /** Other authserv-ids, some containing ours. */
  const otherId = fc.oneof(
    fc.mixedCase(fc.constantFrom(
      "other.test",
      `${OURS}.evil`,
      `x${OURS}`,
      `${OURS}-2`,
      `sub.${OURS}`,
      "mx.ours",
      "mx-ours.test",
      `"${OURS} "`,
      `"x${OURS}"`,
    )),
    fc.domain().filter((d) => d.toLowerCase() !== OURS),
  );
  const theirs: fc.Arbitrary<Field> = fc.oneof(
    // Another server's verdict, maybe with our name in a comment before its id.
    fc.tuple(
      name,
      cfwsMaybeHuge,
      fc.constantFrom("", `(${OURS})`, `(a (${OURS}) b) `),
      otherId,
      rest,
    )
      .map(([n, c, inComment, id, r]) => ({
        text: `${n}${c}${inComment}${id}${r}${eol}`,
        claim: false,
      })),
    // Our id at the start of fields with other names.
    fc.tuple(
      fc.mixedCase(fc.constantFrom(
        "X-Authentication-Results",
        "ARC-Authentication-Results",
        "Authentication-Results-Old",
        "Authentication-Result",
      )),
      cfws,
      rest,
    ).map(([n, c, r]) => ({ text: `${n}:${c} ${OURS}${r}${eol}`, claim: false })),
    // A field without an authserv-id.
    fc.tuple(name, cfws).map(([n, c]) => ({ text: `${n}${c}; none${eol}`, claim: false })),
  );
  /** Ordinary fields, some over 64 KiB (folded every 900 bytes, or one long line). */
  const plain: fc.Arbitrary<Field> = fc.tuple(
    fc.constantFrom("Subject", "Received", "X-Filler", "To", "DKIM-Signature"),
    fc.array(fc.constantFrom("word", OURS, ";", "(", ")", '"', "Authentication-Results:"), {
      maxLength: 6,
    }),
    fc.constantFrom(0, 0, 0, 0, 70_000, 150_000),
    fc.boolean(),
  ).map(([n, words, size, folded]) => {
    const filler = size === 0
      ? ""
      : folded
      ? Array.from({ length: Math.ceil(size / 900) }, () => "y".repeat(900)).join(eol + " ")
      : "z".repeat(size);
    return { text: `${n}: ${words.join(" ")}${filler}${eol}`, claim: false };
  });
  const fields = fc.array(
    fc.oneof({ weight: 2, arbitrary: claim }, { weight: 2, arbitrary: theirs }, {
      weight: 2,
      arbitrary: plain,
    }),
    { minLength: 1, maxLength: 8 },
  );
  const body = fc.constantFrom(
    "",
    `Authentication-Results: ${OURS}; in the body, kept${eol}`,
    `hello${eol}${eol}Authentication-Results: ${OURS}; spf=pass${eol}`,
  );
  return { fields, body };
}

function check(eol: string) {
  const { fields, body } = arbitraries(eol);
  return fc.property(
    fields,
    body,
    fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
    (generated, text, cutAt) => {
      const message = generated.map((f) => f.text).join("") + eol + text;
      const bytes = new TextEncoder().encode(message);
      const cuts = [...new Set(cutAt.map((c) => Math.floor(c * bytes.byteLength)))]
        .sort((a, b) => a - b);
      const filter = new HeaderFilter(ourAuthenticationResults(OURS));
      const { out, dropped } = filterBytes(filter, bytes, cuts);
      const kept = generated.filter((f) => !f.claim).map((f) => f.text).join("") + eol + text;
      const claims = generated.filter((f) => f.claim).length;
      assert.equal(dropped, claims);
      // Byte for byte (the generated text is ASCII); compared as text for readable diffs.
      assert.equal(out.byteLength, new TextEncoder().encode(kept).byteLength);
      assert.equal(new TextDecoder().decode(out), kept);
    },
  );
}

describe("ourAuthenticationResults with HeaderFilter (property)", () => {
  it("every spelling of a claim is removed; every other field survives byte for byte (CRLF)", () => {
    fc.assert(check("\r\n"), PARAMS);
  });

  it("the same with LF line endings", () => {
    fc.assert(check("\n"), { ...PARAMS, numRuns: 50 });
  });
});
