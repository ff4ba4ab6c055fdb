import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkHeaderEntries,
  checkHeaderLines,
  lastLine,
  recordToLines,
  replyText,
} from "../../../src/hooks/headers.ts";

describe("checkHeaderLines", () => {
  it("checkHeaderLines() keeps valid fields, each ending in CRLF, in order", () => {
    assert.deepEqual(checkHeaderLines(["X-Spam: no", "X-Score: 1.5", "Subject: ünïcödé"]), {
      text: "X-Spam: no\r\nX-Score: 1.5\r\nSubject: ünïcödé\r\n",
      kept: 3,
      dropped: [],
    });
  });

  it("checkHeaderLines() returns empty text when given no lines", () => {
    assert.deepEqual(checkHeaderLines([]), { text: "", kept: 0, dropped: [] });
  });

  it("checkHeaderLines() keeps a field with an empty body and one with no space after the colon", () => {
    assert.deepEqual(checkHeaderLines(["X-Empty:", "X-Tight:value"]), {
      text: "X-Empty:\r\nX-Tight:value\r\n",
      kept: 2,
      dropped: [],
    });
  });

  it("checkHeaderLines() keeps a field name of every printable character except the colon", () => {
    const name = "!#$%&'*+-.^_`|~0-9A-Za-z\"(),/;<=>?@[\\]{}";
    const result = checkHeaderLines([`${name}: v`]);
    assert.equal(result.kept, 1);
    assert.equal(result.text, `${name}: v\r\n`);
  });

  it("checkHeaderLines() keeps continuation lines (space or tab) that follow a kept field", () => {
    assert.deepEqual(
      checkHeaderLines(["X-Long: part one", " part two", "\tpart three", "X-B: 2"]),
      {
        text: "X-Long: part one\r\n part two\r\n\tpart three\r\nX-B: 2\r\n",
        kept: 4,
        dropped: [],
      },
    );
  });

  it("checkHeaderLines() drops a continuation line when it comes first", () => {
    assert.deepEqual(checkHeaderLines([" orphan", "X-A: 1"]), {
      text: "X-A: 1\r\n",
      kept: 1,
      dropped: [" orphan"],
    });
  });

  it("checkHeaderLines() drops continuation lines that follow a dropped field", () => {
    assert.deepEqual(checkHeaderLines(["Bad Name: x", " cont 1", "\tcont 2", "X-A: 1", " ok"]), {
      text: "X-A: 1\r\n ok\r\n",
      kept: 2,
      dropped: ["Bad Name: x", " cont 1", "\tcont 2"],
    });
  });

  it("checkHeaderLines() drops names with spaces, a space before the colon, or no name", () => {
    const bad = ["X Spam: yes", "X-Spam : yes", ": no name", "NoColonAtAll", "Ünï: x"];
    const result = checkHeaderLines(bad);
    assert.equal(result.kept, 0);
    assert.equal(result.text, "");
    assert.deepEqual(result.dropped, bad);
  });

  it("checkHeaderLines() reads the name up to the first colon when the body holds colons", () => {
    // "X:Y: z" is the field "X" with body "Y: z", which is valid.
    assert.deepEqual(checkHeaderLines(["X:Y: z", "Time: 12:30:00"]), {
      text: "X:Y: z\r\nTime: 12:30:00\r\n",
      kept: 2,
      dropped: [],
    });
  });

  it("checkHeaderLines() drops a field whose body holds a control character other than tab", () => {
    for (const c of ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"]) {
      const line = `X-A: a${c}b`;
      assert.deepEqual(checkHeaderLines([line]), { text: "", kept: 0, dropped: [line] }, line);
    }
    assert.equal(checkHeaderLines(["X-A: a\tb"]).kept, 1);
  });

  it("checkHeaderLines() drops a field or continuation holding a C1 control, U+2028 or U+2029", () => {
    // NEL (U+0085) and U+2028/U+2029 are line breaks to some readers, CSI
    // (U+009B) starts a terminal escape: none is text in a header.
    for (const c of ["\u0080", "\u0085", "\u009b", "\u009f", "\u2028", "\u2029"]) {
      const field = `X-C1: a${c}Injected: b`;
      assert.deepEqual(checkHeaderLines([field]), { text: "", kept: 0, dropped: [field] }, field);
      const continued = checkHeaderLines(["X-A: 1", ` more${c}Injected: b`]);
      assert.deepEqual(continued.dropped, [` more${c}Injected: b`], JSON.stringify(c));
    }
    // The characters next to them are text.
    assert.equal(checkHeaderLines(["X-A: \u00a0\u00e9\u2027\u202a"]).kept, 1);
  });

  it("checkHeaderLines() drops a continuation line holding a control character", () => {
    assert.deepEqual(checkHeaderLines(["X-A: 1", " bad\x00"]), {
      text: "X-A: 1\r\n",
      kept: 1,
      dropped: [" bad\x00"],
    });
  });

  it("checkHeaderLines() drops a line with a bare CR inside it", () => {
    assert.deepEqual(checkHeaderLines(["X-A: 1\rX-B: 2"]), {
      text: "",
      kept: 0,
      dropped: ["X-A: 1\rX-B: 2"],
    });
  });

  it("checkHeaderLines() keeps a line of exactly 998 characters and drops one of 999", () => {
    const ok = `X: ${"a".repeat(995)}`;
    const long = `X: ${"a".repeat(996)}`;
    assert.equal(ok.length, 998);
    assert.deepEqual(checkHeaderLines([ok]), { text: `${ok}\r\n`, kept: 1, dropped: [] });
    const result = checkHeaderLines([long]);
    assert.equal(result.kept, 0);
    assert.equal(result.text, "");
    // Dropped lines are reported cut to 200 characters.
    assert.deepEqual(result.dropped, [long.slice(0, 200)]);
  });

  it("checkHeaderLines() drops a line over 998 octets of UTF-8 even when it has fewer characters", () => {
    // RFC 6532 section 3.4: with UTF-8 headers the limit is 998 octets.
    const line = `X: ${"é".repeat(600)}`; // 603 characters, 1203 octets
    assert.ok(new TextEncoder().encode(line).byteLength > 998);
    assert.equal(checkHeaderLines([line]).kept, 0);
  });

  it("checkHeaderLines() drops a continuation line of only white space", () => {
    // RFC 5322 sections 3.2.2 and 4.2: a folded line consisting only of
    // white space is obsolete syntax, and some parsers take it for the end
    // of the header section.
    const result = checkHeaderLines(["X-A: 1", " ", "X-B: 2"]);
    assert.equal(result.text, "X-A: 1\r\nX-B: 2\r\n");
    assert.deepEqual(result.dropped, [" "]);
  });

  it("checkHeaderLines() splits an element holding CRLF or LF line breaks into lines", () => {
    const crlf = checkHeaderLines(["X-A: 1\r\nX-B: 2\r\n\tfolded\r\n"]);
    const lf = checkHeaderLines(["X-A: 1\nX-B: 2\n\tfolded\n"]);
    const expected = { text: "X-A: 1\r\nX-B: 2\r\n\tfolded\r\n", kept: 3, dropped: [] };
    assert.deepEqual(crlf, expected);
    assert.deepEqual(lf, expected);
  });

  it("checkHeaderLines() removes a trailing CR from a line", () => {
    assert.deepEqual(checkHeaderLines(["X-A: 1\r"]), { text: "X-A: 1\r\n", kept: 1, dropped: [] });
  });

  it("checkHeaderLines() ignores empty lines without counting them as dropped", () => {
    assert.deepEqual(checkHeaderLines(["", "X-A: 1", "", "\r\n", "\n\n", "X-B: 2", ""]), {
      text: "X-A: 1\r\nX-B: 2\r\n",
      kept: 2,
      dropped: [],
    });
  });
});

describe("checkHeaderEntries", () => {
  it("checkHeaderEntries() drops a list entry that holds a second field after CRLF or LF", () => {
    for (const entry of ["X-A: one\r\nX-Injected: yes", "X-A: one\nX-Injected: yes"]) {
      assert.deepEqual(checkHeaderEntries([entry, "X-Ok: 1"]), {
        text: "X-Ok: 1\r\n",
        kept: 1,
        dropped: [entry],
      }, JSON.stringify(entry));
    }
  });

  it("checkHeaderEntries() drops an entry with a bare CR, a NUL or another control character", () => {
    for (
      const entry of [
        "X-A: one\rX-Injected: yes",
        "X-A: one\r",
        "X-A: one\x00X-Injected: yes",
        "X-A: one\x0bX-Injected: yes",
        "X-A: one\r\n two\x00",
      ]
    ) {
      assert.deepEqual(checkHeaderEntries([entry]), { text: "", kept: 0, dropped: [entry] });
    }
  });

  it("checkHeaderEntries() drops an entry with a C1 control, U+2028 or U+2029, on any of its lines", () => {
    for (const c of ["\u0085", "\u009b", "\u2028", "\u2029"]) {
      for (const entry of [`X-C1: a${c}Injected: b`, `X-A: one\r\n two${c}`]) {
        assert.deepEqual(
          checkHeaderEntries([entry, "X-Ok: 1"]),
          { text: "X-Ok: 1\r\n", kept: 1, dropped: [entry] },
          JSON.stringify(entry),
        );
      }
    }
  });

  it("checkHeaderEntries() drops an entry whose name is invalid", () => {
    for (const entry of ["X Bad: v", "X-Bad : v", ": v", "no colon", "Ünï: v", "\x00X: v"]) {
      assert.deepEqual(checkHeaderEntries([entry]), { text: "", kept: 0, dropped: [entry] });
    }
  });

  it("checkHeaderEntries() drops an entry with an empty line, which would end the header", () => {
    for (const entry of ["X-A: one\r\n\r\nBody", "X-A: one\n\n", "X-A: one\r\n", "X-A: one\n"]) {
      assert.equal(checkHeaderEntries([entry]).kept, 0, JSON.stringify(entry));
    }
  });

  it("checkHeaderEntries() drops a continuation line of only white space inside an entry", () => {
    assert.equal(checkHeaderEntries(["X-A: one\r\n \r\nX-B: two"]).kept, 0);
    assert.equal(checkHeaderEntries(["X-A: one\r\n   "]).kept, 0);
  });

  it("checkHeaderEntries() keeps an entry folded with CRLF or LF, as CRLF lines", () => {
    assert.deepEqual(checkHeaderEntries(["X-Long: part one\r\n part two\n\tthree", "X-B: 2"]), {
      text: "X-Long: part one\r\n part two\r\n\tthree\r\nX-B: 2\r\n",
      kept: 4,
      dropped: [],
    });
  });

  it("checkHeaderEntries() keeps an entry that continues a kept field, drops one after a dropped field", () => {
    assert.deepEqual(
      checkHeaderEntries(["X-A: 1", "  more", "Bad Name: x", " orphan", " also\r\nX-C: 3"]),
      {
        text: "X-A: 1\r\n  more\r\n",
        kept: 2,
        dropped: ["Bad Name: x", " orphan", " also\r\nX-C: 3"],
      },
    );
    assert.deepEqual(checkHeaderEntries([" first"]).dropped, [" first"]);
  });

  it("checkHeaderEntries() drops a continuation entry that would start a field on its next line", () => {
    const result = checkHeaderEntries(["X-A: 1", " more\r\nX-Injected: yes"]);
    assert.equal(result.text, "X-A: 1\r\n");
  });

  it("checkHeaderEntries() checks the 998-octet limit on every line of an entry", () => {
    const ok = `X: ${"a".repeat(995)}`;
    assert.equal(checkHeaderEntries([`${ok}\r\n ${"b".repeat(997)}`]).kept, 2);
    assert.equal(checkHeaderEntries([`${ok}\r\n ${"b".repeat(998)}`]).kept, 0);
  });

  it("checkHeaderEntries() ignores empty entries without counting them as dropped", () => {
    assert.deepEqual(checkHeaderEntries(["", "X-A: 1", ""]), {
      text: "X-A: 1\r\n",
      kept: 1,
      dropped: [],
    });
  });

  it("recordToLines() + checkHeaderEntries() drop a record value that would start a field, or holds a bare CR or NUL", () => {
    for (
      const value of [
        "a\r\nX-Injected: yes",
        "a\nX-Injected: yes",
        "a\rX-Injected: yes",
        "a\x00X-Injected: yes",
        "a\r\n \r\nX-Injected: yes",
        "a\r\n",
      ]
    ) {
      const result = checkHeaderEntries(recordToLines({ "X-Note": value, "X-Ok": "1" }));
      assert.equal(result.text, "X-Ok: 1\r\n", JSON.stringify(value));
      assert.equal(result.dropped.length, 1, JSON.stringify(value));
    }
    // The audit's record: a CSI (U+009B) in a value.
    const c1 = checkHeaderEntries(recordToLines({ "X-C3": "a\u009bInjected", "X-Ok": "1" }));
    assert.deepEqual(c1, { text: "X-Ok: 1\r\n", kept: 1, dropped: ["X-C3: a\u009bInjected"] });
    const named = checkHeaderEntries(recordToLines({ "X-Bad\r\nX-Injected": "yes" }));
    assert.equal(named.text, "");
  });
});

describe("recordToLines", () => {
  it("recordToLines() writes one `name: value` line per entry in insertion order", () => {
    assert.deepEqual(recordToLines({ "X-B": "2", "X-A": "one two" }), ["X-B: 2", "X-A: one two"]);
  });

  it("recordToLines() returns no lines for an empty record", () => {
    assert.deepEqual(recordToLines({}), []);
  });

  it("recordToLines() + checkHeaderLines() drop entries whose name has a space or a colon, keeping the rest", () => {
    const result = checkHeaderLines(
      recordToLines({ "X Bad": "v", "X-Good": "w", "X-Spam:Flag": "yes", "": "empty name" }),
    );
    assert.equal(result.text, "X-Good: w\r\n");
    assert.equal(result.kept, 1);
    assert.equal(result.dropped.length, 3);
    assert.ok(result.dropped[0]!.includes("X Bad"), result.dropped[0]);
    assert.ok(result.dropped[1]!.includes("X-Spam:Flag"), result.dropped[1]);
  });

  it("recordToLines() + checkHeaderLines() drop an entry whose value would start another field", () => {
    for (const value of ["a\r\nBcc: x@ex.test", "a\nBcc: x@ex.test", "a\n\nBody", "a\r\n"]) {
      const result = checkHeaderLines(recordToLines({ "X-Note": value, "X-Ok": "1" }));
      assert.equal(result.text, "X-Ok: 1\r\n", JSON.stringify(value));
      assert.equal(result.dropped.length, 1, JSON.stringify(value));
    }
  });

  it("recordToLines() + checkHeaderLines() drop an entry whose value holds a bare CR", () => {
    const result = checkHeaderLines(recordToLines({ "X-Note": "a\rBcc: x@ex.test" }));
    assert.equal(result.text, "");
    assert.equal(result.kept, 0);
  });

  it("recordToLines() + checkHeaderLines() keep a value folded onto continuation lines", () => {
    const result = checkHeaderLines(recordToLines({ "X-Long": "part one\r\n part two\n\tthree" }));
    assert.deepEqual(result, {
      text: "X-Long: part one\r\n part two\r\n\tthree\r\n",
      kept: 3,
      dropped: [],
    });
  });
});

describe("replyText", () => {
  it("replyText() returns printable text unchanged", () => {
    assert.equal(replyText("Looks like spam", "fallback"), "Looks like spam");
  });

  it("replyText() replaces control characters and line breaks with one space", () => {
    assert.equal(replyText("line one\r\nline two", "f"), "line one line two");
    assert.equal(replyText("a\x00\x01\x02b\x7fc\x1bd", "f"), "a b c d");
    assert.equal(replyText("550 fake\r\n250 OK", "f"), "550 fake 250 OK");
  });

  it("replyText() collapses runs of white space and trims both ends", () => {
    assert.equal(replyText("  a \t\t b   c  ", "f"), "a b c");
  });

  it("replyText() cuts the text to 300 characters", () => {
    assert.equal(replyText("x".repeat(301), "f"), "x".repeat(300));
    assert.equal(replyText("y".repeat(300), "f"), "y".repeat(300));
    assert.equal(replyText(`${" ".repeat(50)}${"z".repeat(400)}`, "f"), "z".repeat(300));
  });

  it("replyText() returns the fallback when nothing printable is left", () => {
    assert.equal(replyText("", "Message rejected"), "Message rejected");
    assert.equal(replyText("   \t ", "Message rejected"), "Message rejected");
    assert.equal(replyText("\r\n\x00\x7f", "Message rejected"), "Message rejected");
  });
});

describe("lastLine", () => {
  it("lastLine() returns the last non-empty line, trimmed", () => {
    assert.equal(lastLine("first\nsecond\n"), "second");
    assert.equal(lastLine("first\r\n  second  \r\n\r\n   \n"), "second");
  });

  it("lastLine() returns a single line without a newline", () => {
    assert.equal(lastLine("only"), "only");
  });

  it("lastLine() returns an empty string when there is no non-empty line", () => {
    assert.equal(lastLine(""), "");
    assert.equal(lastLine("\n \r\n\t\n"), "");
  });
});
