import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { printable, printableJson } from "../../../src/admin/terminal.ts";

/** What a terminal acts on: C0, DEL, C1, separators and bidirectional controls. */
// deno-lint-ignore no-control-regex -- control characters are what is checked
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe("printable", () => {
  it("writes control characters as visible escapes", () => {
    assert.equal(printable("a\x1b[31mb\x07\r\n\t\x00"), "a\\x1b[31mb\\x07\\x0d\\x0a\\x09\\x00");
    assert.equal(
      printable("\x7f\x80\x9b\u202e\u2066\u2028"),
      "\\x7f\\x80\\x9b\\u{202e}\\u{2066}\\u{2028}",
    );
  });

  it("leaves other text alone, letters of any script included", () => {
    const text = "550 5.1.1 <josé@例え.jp> user unknown; Ünïcödé ok ~!@#$%^&*()";
    assert.equal(printable(text), text);
  });

  it("never lets an unsafe character through", () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), (text) => !UNSAFE.test(printable(text))));
  });
});

describe("printableJson", () => {
  it("stays JSON of the same value, with no unsafe character", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.string({ unit: "binary" }), (value, text) => {
        for (const v of [value, { last_error: text, nested: [text] }]) {
          const out = printableJson(v);
          if (UNSAFE.test(out.replace(/\n/g, ""))) return false;
          assert.deepEqual(JSON.parse(out), JSON.parse(JSON.stringify(v)));
        }
        return true;
      }),
    );
  });

  it("indents as JSON.stringify does", () => {
    assert.equal(printableJson({ a: [1, "\x9b"] }), '{\n  "a": [\n    1,\n    "\\u009b"\n  ]\n}');
  });
});
