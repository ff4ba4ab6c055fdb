import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatFields, formatValue } from "../../../src/log/mod.ts";

describe("formatValue", () => {
  it("formatValue() writes safe tokens bare", () => {
    assert.equal(formatValue("queued"), "queued");
    assert.equal(formatValue("<alice@ex.test>"), "<alice@ex.test>");
    assert.equal(formatValue("192.0.2.1:2525"), "192.0.2.1:2525");
    assert.equal(formatValue("[::1]"), "[::1]");
    assert.equal(formatValue("/var/spool/a+b-c_d"), "/var/spool/a+b-c_d");
  });

  it("formatValue() writes numbers and booleans bare", () => {
    assert.equal(formatValue(42), "42");
    assert.equal(formatValue(-1.5), "-1.5");
    assert.equal(formatValue(true), "true");
    assert.equal(formatValue(false), "false");
  });

  it("formatValue() writes - for null and undefined", () => {
    assert.equal(formatValue(null), "-");
    assert.equal(formatValue(undefined), "-");
  });

  it("formatValue() JSON-quotes values with spaces", () => {
    assert.equal(formatValue("mailbox busy"), '"mailbox busy"');
  });

  it("formatValue() JSON-quotes and escapes quotes and backslashes", () => {
    assert.equal(formatValue('say "hi"'), '"say \\"hi\\""');
    assert.equal(formatValue("a\\b"), '"a\\\\b"');
  });

  it("formatValue() escapes newlines so that a value cannot forge a line", () => {
    const value = formatValue("x\nts=2026 event=forged");
    assert.equal(value, '"x\\nts=2026 event=forged"');
    assert.equal(value.includes("\n"), false);
    assert.equal(formatValue("a\r\nb").includes("\r"), false);
  });

  it("formatValue() escapes DEL, C1 controls and the Unicode line separators, which JSON leaves raw", () => {
    for (const c of ["\u007f", "\u0085", "\u009b", "\u2028", "\u2029"]) {
      const written = formatValue(`a${c}Injected: b`);
      assert.ok(!written.includes(c), JSON.stringify(written));
      assert.equal(JSON.parse(written), `a${c}Injected: b`);
    }
    // Characters beside them are still written as they are.
    assert.equal(formatValue("café\u00a0x"), '"café\u00a0x"');
  });

  it("formatValue() quotes = so that a value cannot forge a field", () => {
    assert.equal(formatValue("a=b"), '"a=b"');
  });

  it("formatValue() quotes the empty string and non-ASCII text", () => {
    assert.equal(formatValue(""), '""');
    assert.equal(formatValue("jörg"), '"jörg"');
  });
});

describe("formatFields", () => {
  it("formatFields() joins key=value pairs in order and skips undefined", () => {
    assert.equal(
      formatFields({ qid: "abc", event: "delivery", skip: undefined, error: "no route", n: null }),
      'qid=abc event=delivery error="no route" n=-',
    );
  });

  it("formatFields() returns an empty string when there are no fields", () => {
    assert.equal(formatFields({}), "");
  });
});
