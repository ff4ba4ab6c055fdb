import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  aliasExistsFromExec,
  aliasExistsFromModule,
  aliasResolveFromExec,
  aliasResolveFromModule,
  EXIT_PERMANENT,
  postDataFromExec,
  postDataFromModule,
  postDataOutcome,
} from "../../../src/hooks/points.ts";
import type { CallFailure, CallOutcome } from "../../../src/hooks/worker.ts";
import type { SpawnResult } from "../../../src/runtime/mod.ts";

const FAILED_TEXT = "Message could not be checked, try again later";

const ok = (value: unknown): CallOutcome => ({ ok: true, value });
const failed = (failure: CallFailure, error: string): CallOutcome => ({
  ok: false,
  failure,
  error,
});
function exited(overrides: Partial<SpawnResult>): SpawnResult {
  return { exitCode: 0, timedOut: false, stdout: "", stderr: "", ...overrides };
}

describe("postDataFromModule", () => {
  it("postDataFromModule() drops a header entry that would add a second field, and keeps the rest", () => {
    // A hook that copies a decoded Subject into a header: the sender chose it.
    const subject = "hello\r\nBcc: everyone@example.test";
    assert.deepEqual(
      postDataFromModule(ok({
        action: "accept",
        headers: ["X-A: one\r\nX-Injected: yes", `X-Subject: ${subject}`, "X-Ok: 1"],
      })),
      {
        kind: "accept",
        headers: "X-Ok: 1\r\n",
        kept: 1,
        dropped: ["X-A: one\r\nX-Injected: yes", `X-Subject: ${subject}`],
      },
    );
  });

  it("postDataFromModule() keeps a folded entry as one field", () => {
    const verdict = postDataFromModule(ok({ action: "accept", headers: ["X-A: one\r\n two"] }));
    assert.equal(verdict.kind === "accept" && verdict.headers, "X-A: one\r\n two\r\n");
  });

  it("postDataFromModule() accepts with no headers when the hook returns nothing", () => {
    for (const value of [undefined, null]) {
      assert.deepEqual(postDataFromModule(ok(value)), {
        kind: "accept",
        headers: "",
        kept: 0,
        dropped: [],
      });
    }
  });

  it("postDataFromModule() accepts with no headers for { action: accept } without headers", () => {
    assert.deepEqual(postDataFromModule(ok({ action: "accept" })), {
      kind: "accept",
      headers: "",
      kept: 0,
      dropped: [],
    });
  });

  it("postDataFromModule() adds valid header lines and reports the dropped ones", () => {
    const verdict = postDataFromModule(
      ok({ action: "accept", headers: ["X-Spam: no", "bad line", " folded? no"] }),
    );
    assert.deepEqual(verdict, {
      kind: "accept",
      headers: "X-Spam: no\r\n",
      kept: 1,
      dropped: ["bad line", " folded? no"],
    });
  });

  it("postDataFromModule() adds the fields of a name → value record", () => {
    const verdict = postDataFromModule(
      ok({ action: "accept", headers: { "X-Score": "2.5", "X-Checked": "yes" } }),
    );
    assert.deepEqual(verdict, {
      kind: "accept",
      headers: "X-Score: 2.5\r\nX-Checked: yes\r\n",
      kept: 2,
      dropped: [],
    });
  });

  it("postDataFromModule() drops a record header whose name holds a colon", () => {
    // { "X-Spam:Flag": "yes" } names no valid field; it must not become the
    // field "X-Spam" with the body "Flag: yes".
    const verdict = postDataFromModule(
      ok({ action: "accept", headers: { "X-Spam:Flag": "yes", "X-Good": "1" } }),
    );
    assert.equal(verdict.kind, "accept");
    if (verdict.kind !== "accept") return;
    assert.equal(verdict.headers, "X-Good: 1\r\n");
    assert.equal(verdict.kept, 1);
    assert.equal(verdict.dropped.length, 1);
  });

  it("postDataFromModule() adds no second field when a record value holds a line break", () => {
    // A value copied from the message (a Subject, say) must not inject a field.
    const verdict = postDataFromModule(
      ok({ action: "accept", headers: { "X-Note": "a\r\nBcc: victim@ex.test" } }),
    );
    assert.equal(verdict.kind, "accept");
    if (verdict.kind !== "accept") return;
    assert.ok(
      !/(^|\r\n)Bcc:/i.test(verdict.headers),
      `a Bcc field was injected: ${JSON.stringify(verdict.headers)}`,
    );
  });

  it("postDataFromModule() refuses permanently with the hook's text for { action: reject }", () => {
    assert.deepEqual(postDataFromModule(ok({ action: "reject", message: "Looks like\r\nspam" })), {
      kind: "refuse",
      permanent: true,
      text: "Looks like spam",
      cause: "rejected",
    });
  });

  it("postDataFromModule() uses the default reject text when the hook's text is blank", () => {
    assert.deepEqual(postDataFromModule(ok({ action: "reject", message: " \r\n " })), {
      kind: "refuse",
      permanent: true,
      text: "Message rejected",
      cause: "rejected",
    });
  });

  it("postDataFromModule() refuses temporarily with the hook's text for { action: defer }", () => {
    assert.deepEqual(postDataFromModule(ok({ action: "defer", message: "greylisted" })), {
      kind: "refuse",
      permanent: false,
      text: "greylisted",
      cause: "deferred",
    });
    assert.deepEqual(postDataFromModule(ok({ action: "defer", message: "" })), {
      kind: "refuse",
      permanent: false,
      text: FAILED_TEXT,
      cause: "deferred",
    });
  });

  it("postDataFromModule() refuses temporarily with a bad_result cause for a malformed result", () => {
    const bad: unknown[] = [
      "accept",
      true,
      42,
      [],
      { action: "maybe" },
      { action: "reject" },
      { action: "reject", message: 5 },
      { action: "reject", message: "x".repeat(2001) },
      { action: "accept", headers: "X-A: 1" },
      { action: "accept", headers: [1] },
      { action: "accept", headers: { "X-A": 1 } },
      { action: "accept", extra: true },
    ];
    for (const value of bad) {
      const verdict = postDataFromModule(ok(value));
      assert.equal(verdict.kind, "refuse", JSON.stringify(value));
      if (verdict.kind !== "refuse") continue;
      assert.equal(verdict.permanent, false, JSON.stringify(value));
      assert.equal(verdict.text, FAILED_TEXT);
      assert.match(verdict.cause, /^bad_result: result /, JSON.stringify(value));
    }
  });

  it("postDataFromModule() refuses temporarily for every failure kind, citing the first line of the error", () => {
    const kinds: CallFailure[] = ["timeout", "crash", "load_error", "hook_error", "protocol"];
    for (const kind of kinds) {
      assert.deepEqual(
        postDataFromModule(failed(kind, "Error: boom\n    at hook (file:///x.ts:1:1)")),
        { kind: "refuse", permanent: false, text: FAILED_TEXT, cause: `${kind}: Error: boom` },
        kind,
      );
    }
  });
});

describe("postDataFromExec", () => {
  it("postDataFromExec() defers, naming the output and its size, when the hook wrote past the limit", () => {
    const verdict = postDataFromExec(
      exited({
        exitCode: null,
        stderr: "/h/post-data wrote more than 65536 bytes to standard output (90000 read); " +
          "it was killed and its answer not used",
        stdoutOverflow: 90_000,
      }),
      5000,
    );
    assert.equal(verdict.kind, "refuse");
    assert.ok(verdict.kind === "refuse" && !verdict.permanent);
    assert.match(verdict.cause, /^output: .*post-data wrote more than 65536 bytes .*90000 read/);
  });

  it("postDataFromExec() accepts with the header lines printed when the hook exits 0", () => {
    const verdict = postDataFromExec(
      exited({ exitCode: 0, stdout: "X-Spam: no\r\nX-Score: 1\n\tfolded\nnot a header\n" }),
      5000,
    );
    assert.deepEqual(verdict, {
      kind: "accept",
      headers: "X-Spam: no\r\nX-Score: 1\r\n\tfolded\r\n",
      kept: 3,
      dropped: ["not a header"],
    });
  });

  it("postDataFromExec() accepts with no headers when the hook exits 0 silently", () => {
    assert.deepEqual(postDataFromExec(exited({ exitCode: 0 }), 5000), {
      kind: "accept",
      headers: "",
      kept: 0,
      dropped: [],
    });
  });

  it("postDataFromExec() refuses permanently with the last line of output when the hook exits 20", () => {
    assert.equal(EXIT_PERMANENT, 20);
    assert.deepEqual(
      postDataFromExec(exited({ exitCode: 20, stdout: "checking\nSpam detected\n\n" }), 5000),
      { kind: "refuse", permanent: true, text: "Spam detected", cause: "rejected" },
    );
  });

  it("postDataFromExec() uses the default reject text when a hook exits 20 silently", () => {
    assert.deepEqual(postDataFromExec(exited({ exitCode: 20, stderr: "ignored\n" }), 5000), {
      kind: "refuse",
      permanent: true,
      text: "Message rejected",
      cause: "rejected",
    });
  });

  it("postDataFromExec() defers with the hook's text when the hook exits with another status", () => {
    assert.deepEqual(postDataFromExec(exited({ exitCode: 1, stdout: "try later\n" }), 5000), {
      kind: "refuse",
      permanent: false,
      text: "try later",
      cause: "deferred",
    });
    assert.deepEqual(postDataFromExec(exited({ exitCode: 75 }), 5000), {
      kind: "refuse",
      permanent: false,
      text: FAILED_TEXT,
      cause: "deferred",
    });
  });

  it("postDataFromExec() refuses temporarily as a failure when the hook died of a signal", () => {
    assert.deepEqual(postDataFromExec(exited({ exitCode: null, stdout: "half\n" }), 5000), {
      kind: "refuse",
      permanent: false,
      text: "half",
      cause: "failure: killed",
    });
  });

  it("postDataFromExec() refuses temporarily as a failure citing standard error when the hook cannot be run (126, 127)", () => {
    for (const exitCode of [126, 127]) {
      assert.deepEqual(
        postDataFromExec(exited({ exitCode, stderr: "spawn /x ENOENT\nno such file\n" }), 5000),
        {
          kind: "refuse",
          permanent: false,
          text: FAILED_TEXT,
          cause: `failure: cannot run (exit status ${exitCode}): no such file`,
        },
        `exit ${exitCode}`,
      );
    }
  });

  it("postDataFromExec() refuses temporarily with a timeout cause when the hook ran out of time", () => {
    for (const exitCode of [null, 0, 20]) {
      assert.deepEqual(
        postDataFromExec(exited({ exitCode, timedOut: true, stdout: "X-A: 1\n" }), 1500),
        {
          kind: "refuse",
          permanent: false,
          text: FAILED_TEXT,
          cause: "timeout: no exit within 1500 ms",
        },
        `exit ${exitCode}`,
      );
    }
  });

  it("postDataFromExec() makes the reply text one safe line of at most 300 characters", () => {
    const verdict = postDataFromExec(
      exited({ exitCode: 20, stdout: `${"a\x00".repeat(400)}\n` }),
      5000,
    );
    assert.equal(verdict.kind, "refuse");
    if (verdict.kind !== "refuse") return;
    assert.equal(verdict.text.length, 300);
    assert.match(verdict.text, /^[a ]+$/);
  });
});

describe("aliasResolveFromModule", () => {
  it("aliasResolveFromModule() returns a string result as one right-hand side", () => {
    assert.deepEqual(aliasResolveFromModule(ok("a@x.test, b@y.test")), {
      ok: true,
      rhs: ["a@x.test, b@y.test"],
      sandboxed: true,
    });
  });

  it("aliasResolveFromModule() returns a list, dropping blank entries", () => {
    assert.deepEqual(aliasResolveFromModule(ok(["a@x.test", "  ", "", "| /bin/true"])), {
      ok: true,
      rhs: ["a@x.test", "| /bin/true"],
      sandboxed: true,
    });
  });

  it("aliasResolveFromModule() returns no targets for nothing or a blank string", () => {
    for (const value of [undefined, null, "", "   "]) {
      assert.deepEqual(aliasResolveFromModule(ok(value)), {
        ok: true,
        rhs: [],
        sandboxed: true,
      }, String(value));
    }
  });

  it("aliasResolveFromModule() fails with bad_result for a result of the wrong type", () => {
    for (const value of [5, true, { to: "a@x" }, ["a@x", 1]]) {
      const verdict = aliasResolveFromModule(ok(value));
      assert.equal(verdict.ok, false, JSON.stringify(value));
      if (verdict.ok) continue;
      assert.match(verdict.cause, /^bad_result: /);
    }
  });

  it("aliasResolveFromModule() fails citing the failure kind and first line of the error", () => {
    assert.deepEqual(aliasResolveFromModule(failed("timeout", "no result within 5 ms\nmore")), {
      ok: false,
      cause: "timeout: no result within 5 ms",
    });
  });
});

describe("aliasResolveFromExec", () => {
  it("aliasResolveFromExec() returns the trimmed output when the hook exits 0", () => {
    assert.deepEqual(aliasResolveFromExec(exited({ stdout: "  a@x.test, b@y.test \n" }), 1000), {
      ok: true,
      rhs: ["a@x.test, b@y.test"],
      sandboxed: false,
    });
  });

  it("aliasResolveFromExec() returns no targets when the hook exits 0 with blank output", () => {
    assert.deepEqual(aliasResolveFromExec(exited({ stdout: " \n\n" }), 1000), {
      ok: true,
      rhs: [],
      sandboxed: false,
    });
  });

  it("aliasResolveFromExec() fails citing the status and last error line when the hook exits non-zero", () => {
    assert.deepEqual(
      aliasResolveFromExec(exited({ exitCode: 3, stdout: "a@x", stderr: "one\ntwo\n" }), 1000),
      { ok: false, cause: "exit status 3: two" },
    );
  });

  it("aliasResolveFromExec() fails with a timeout cause when the hook ran out of time", () => {
    assert.deepEqual(
      aliasResolveFromExec(exited({ exitCode: 0, timedOut: true, stdout: "a@x" }), 2500),
      { ok: false, cause: "timeout: no exit within 2500 ms" },
    );
  });
});

describe("aliasExistsFromModule", () => {
  it("aliasExistsFromModule() returns the hook's boolean", () => {
    assert.deepEqual(aliasExistsFromModule(ok(true)), { exists: true });
    assert.deepEqual(aliasExistsFromModule(ok(false)), { exists: false });
  });

  it("aliasExistsFromModule() says no with a bad_result cause for a non-boolean result", () => {
    for (const value of ["yes", 1, null, undefined, {}]) {
      const verdict = aliasExistsFromModule(ok(value));
      assert.equal(verdict.exists, false, String(value));
      assert.match(verdict.cause ?? "", /^bad_result: /, String(value));
    }
  });

  it("aliasExistsFromModule() says no with the failure as cause when the call failed", () => {
    assert.deepEqual(aliasExistsFromModule(failed("crash", "killed by SIGKILL\ntail")), {
      exists: false,
      cause: "crash: killed by SIGKILL",
    });
  });
});

describe("aliasExistsFromExec", () => {
  it("aliasExistsFromExec() says no, naming the output, when the hook wrote past the limit", () => {
    const overflowed = exited({
      exitCode: null,
      stderr: "/h/alias-exists wrote more than 65536 bytes to standard output (70000 read); " +
        "it was killed and its answer not used",
      stdoutOverflow: 70_000,
    });
    assert.deepEqual(aliasExistsFromExec(overflowed, 1000), {
      exists: false,
      cause: "output: /h/alias-exists wrote more than 65536 bytes to standard output " +
        "(70000 read); it was killed and its answer not used",
    });
  });

  it("aliasExistsFromExec() says yes only when the hook exits 0", () => {
    assert.deepEqual(aliasExistsFromExec(exited({ exitCode: 0 }), 1000), { exists: true });
    for (const exitCode of [1, 20, 127, null]) {
      assert.deepEqual(aliasExistsFromExec(exited({ exitCode }), 1000), { exists: false });
    }
  });

  it("aliasExistsFromExec() says no with a timeout cause when the hook ran out of time", () => {
    assert.deepEqual(aliasExistsFromExec(exited({ exitCode: 0, timedOut: true }), 700), {
      exists: false,
      cause: "timeout: no exit within 700 ms",
    });
  });
});

describe("postDataOutcome", () => {
  it("postDataOutcome() names each outcome, bad_output for an accept that dropped lines", () => {
    const accept = { kind: "accept", headers: "", kept: 0 } as const;
    const refuse = { kind: "refuse", permanent: false, text: "t" } as const;
    assert.equal(postDataOutcome({ ...accept, dropped: [] }), "accept");
    assert.equal(postDataOutcome({ ...accept, dropped: ["X-A: 1\r\nX-B: 2"] }), "bad_output");
    assert.equal(postDataOutcome({ ...refuse, permanent: true, cause: "rejected" }), "reject");
    assert.equal(postDataOutcome({ ...refuse, cause: "deferred" }), "defer");
    assert.equal(postDataOutcome({ ...refuse, cause: "timeout: no result" }), "failure");
  });
});
