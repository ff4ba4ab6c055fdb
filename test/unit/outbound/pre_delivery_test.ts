/**
 * Tests of `preDeliveryDecision()`: how a pre-delivery-attempt hook's
 * result (GreenArrow's actions normal, pause, dump, new_mtaid, new_config)
 * or failure becomes the decision for one delivery attempt.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CallOutcome } from "../../../src/hooks/mod.ts";
import { HOOK_ERROR_TEXT, preDeliveryDecision } from "../../../src/outbound/pre_delivery.ts";

/** The decision for a hook that returned `value`. */
function decide(value: unknown) {
  return preDeliveryDecision({ ok: true, value });
}

/** The error text of a decision that must be an error. */
function errorOf(outcome: CallOutcome): string {
  const decision = preDeliveryDecision(outcome);
  assert.equal(decision.kind, "error", `expected an error, got ${JSON.stringify(decision)}`);
  return (decision as { error: string }).error;
}

describe("preDeliveryDecision", () => {
  it("HOOK_ERROR_TEXT is the reference's status text", () => {
    assert.equal(HOOK_ERROR_TEXT, "Error in pre_delivery_attempt_hook (see logfile)");
  });

  it("preDeliveryDecision() delivers unchanged for action normal", () => {
    assert.deepEqual(decide({ action: "normal" }), { kind: "deliver" });
  });

  it("preDeliveryDecision() lower-cases deliver_as_if_to_domain for action normal", () => {
    assert.deepEqual(decide({ action: "normal", deliver_as_if_to_domain: "GMail.Test" }), {
      kind: "deliver",
      asIfDomain: "gmail.test",
    });
  });

  it("preDeliveryDecision() ignores an empty deliver_as_if_to_domain", () => {
    assert.deepEqual(decide({ action: "normal", deliver_as_if_to_domain: "" }), {
      kind: "deliver",
    });
  });

  it("preDeliveryDecision() pauses with the hook's message, or a default one", () => {
    assert.deepEqual(decide({ action: "pause", message: "Not now." }), {
      kind: "pause",
      message: "Not now.",
    });
    const plain = preDeliveryDecision({ ok: true, value: { action: "pause" } });
    assert.equal(plain.kind, "pause");
    assert.ok((plain as { message: string }).message.length > 0);
  });

  it("preDeliveryDecision() dumps with the hook's message, or a default one", () => {
    assert.deepEqual(decide({ action: "dump", message: "Blocked. (#5.7.1)" }), {
      kind: "dump",
      message: "Blocked. (#5.7.1)",
    });
    const plain = decide({ action: "dump" });
    assert.equal(plain.kind, "dump");
    assert.ok((plain as { message: string }).message.length > 0);
  });

  it("preDeliveryDecision() switches the virtual MTA for action new_mtaid", () => {
    assert.deepEqual(decide({ action: "new_mtaid", new_mtaid: "priority_ips" }), {
      kind: "deliver",
      mtaid: "priority_ips",
    });
  });

  it("preDeliveryDecision() takes deliver_as_if_to_domain with new_mtaid too", () => {
    assert.deepEqual(
      decide({ action: "new_mtaid", new_mtaid: "smtp1-3", deliver_as_if_to_domain: "YAHOO.test" }),
      { kind: "deliver", mtaid: "smtp1-3", asIfDomain: "yahoo.test" },
    );
  });

  it("preDeliveryDecision() applies new_mtaid and new_sender for action new_config", () => {
    assert.deepEqual(
      decide({ action: "new_config", new_mtaid: "priority_ips", new_sender: "bounce@ours.test" }),
      { kind: "deliver", mtaid: "priority_ips", sender: "bounce@ours.test" },
    );
    assert.deepEqual(decide({ action: "new_config", new_sender: "b@ours.test" }), {
      kind: "deliver",
      sender: "b@ours.test",
    });
    assert.deepEqual(decide({ action: "new_config", new_mtaid: "x" }), {
      kind: "deliver",
      mtaid: "x",
    });
    assert.deepEqual(decide({ action: "new_config" }), { kind: "deliver" });
  });

  it("preDeliveryDecision() rejects deliver_as_if_to_domain with actions other than normal and new_mtaid", () => {
    for (const action of ["pause", "dump", "new_config"]) {
      const decision = decide({ action, deliver_as_if_to_domain: "x.test" });
      assert.equal(decision.kind, "error", action);
    }
  });

  it("preDeliveryDecision() turns an unknown action into an error", () => {
    assert.match(errorOf({ ok: true, value: { action: "bounce" } }), /invalid return value/);
  });

  it("preDeliveryDecision() turns new_mtaid without new_mtaid into an error naming the field", () => {
    assert.match(errorOf({ ok: true, value: { action: "new_mtaid" } }), /new_mtaid/);
    assert.match(errorOf({ ok: true, value: { action: "new_mtaid", new_mtaid: "" } }), /new_mtaid/);
  });

  it("preDeliveryDecision() turns a result with an extra key into an error", () => {
    const error = errorOf({ ok: true, value: { action: "normal", mtaid: "x" } });
    assert.match(error, /invalid return value/);
    assert.match(error, /mtaid/);
  });

  it("preDeliveryDecision() turns values of the wrong type into errors", () => {
    assert.match(errorOf({ ok: true, value: { action: "pause", message: 42 } }), /message/);
    assert.match(
      errorOf({ ok: true, value: { action: "new_config", new_sender: ["a@b.test"] } }),
      /new_sender/,
    );
    assert.match(errorOf({ ok: true, value: { action: 1 } }), /invalid return value/);
  });

  it("preDeliveryDecision() refuses a new_sender that is not one address for MAIL FROM (no CRLF or <> smuggled)", () => {
    for (
      const sender of [
        "a@b.test\r\nRCPT TO:<victim@c.test>",
        "a@b.test\nDATA",
        "a@b.test> SIZE=1",
        "<a@b.test>",
        "a b@c.test",
        "a@b.test\u0000",
        "no-domain",
        "@b.test",
        "a@",
      ]
    ) {
      const error = errorOf({ ok: true, value: { action: "new_config", new_sender: sender } });
      assert.match(error, /invalid return value: new_sender /, JSON.stringify(sender));
    }
    // What an operator's hook returns still goes through: an address, or the null sender.
    for (const sender of ["bounce+x@ours.test", "ü@bücher.example", ""]) {
      assert.deepEqual(decide({ action: "new_config", new_sender: sender }), {
        kind: "deliver",
        sender,
      });
    }
  });

  it("preDeliveryDecision() refuses a new_mtaid that no virtual MTA can be named (a line break would forge a log line)", () => {
    for (const action of ["new_mtaid", "new_config"]) {
      for (const name of ["bulk\n2026-01-01T00:00:00Z error in forged", "a b", "x\r", "ü"]) {
        const error = errorOf({ ok: true, value: { action, new_mtaid: name } });
        assert.match(
          error,
          /invalid return value: new_mtaid /,
          `${action} ${JSON.stringify(name)}`,
        );
      }
    }
    assert.deepEqual(decide({ action: "new_mtaid", new_mtaid: "smtp1-3.bulk_A" }), {
      kind: "deliver",
      mtaid: "smtp1-3.bulk_A",
    });
  });

  it("preDeliveryDecision() refuses a deliver_as_if_to_domain that is not a domain name", () => {
    for (const domain of ["x.test\r\nX: y", "x test", "a..b", "-a.test", "../etc", "a@b.test"]) {
      const error = errorOf({
        ok: true,
        value: { action: "normal", deliver_as_if_to_domain: domain },
      });
      assert.match(error, /invalid return value: deliver_as_if_to_domain /, JSON.stringify(domain));
    }
    assert.deepEqual(decide({ action: "normal", deliver_as_if_to_domain: "xn--bcher-kva.Test" }), {
      kind: "deliver",
      asIfDomain: "xn--bcher-kva.test",
    });
  });

  it("preDeliveryDecision() turns a missing result into an error", () => {
    for (const value of [null, undefined, "normal", 0, [], {}]) {
      assert.match(
        errorOf({ ok: true, value }),
        /invalid return value/,
        `for ${JSON.stringify(value)}`,
      );
    }
  });

  it("preDeliveryDecision() names an exception in the hook, first line only", () => {
    const error = errorOf({
      ok: false,
      failure: "hook_error",
      error: "Illegal division by zero\n    at hook.ts:2:3",
    });
    assert.match(error, /Exception running pre_delivery_attempt_hook/);
    const decision = preDeliveryDecision({ ok: false, failure: "hook_error", error: "x" });
    assert.equal((decision as { loadError?: boolean }).loadError, undefined);
    assert.match(error, /Illegal division by zero/);
    assert.doesNotMatch(error, /hook\.ts:2:3/);
  });

  it("preDeliveryDecision() names a timeout", () => {
    const error = errorOf({ ok: false, failure: "timeout", error: "no answer in 1000 ms" });
    assert.match(error, /timed out/);
    assert.match(error, /no answer in 1000 ms/);
  });

  it("preDeliveryDecision() names a hook that does not load", () => {
    const outcome: CallOutcome = {
      ok: false,
      failure: "load_error",
      error: "syntax error at line 3",
    };
    const error = errorOf(outcome);
    assert.match(error, /error loading pre_delivery_attempt_hook/);
    assert.match(error, /syntax error at line 3/);
    assert.equal((preDeliveryDecision(outcome) as { loadError?: boolean }).loadError, true);
  });

  it("preDeliveryDecision() keeps where a hook that does not load failed, on one line, without its source", () => {
    // What the worker reports for a syntax error: deno's code frame quotes
    // the hook's source (which may hold a secret) between the message and
    // the location.
    const error = errorOf({
      ok: false,
      failure: "load_error",
      error: [
        "TypeError: SyntaxError: Expected ',', got ';'",
        "  |",
        "2 | const TOKEN = 'tok_LIVE_5f2c'; export default function () { return { action: 'normal' ;",
        "  |                                                                                      ~",
        "    at file:///etc/postern/hooks/pre-delivery-attempt.ts:2:87",
        "    at async file:///var/lib/postern/run/hook_worker.js:233:18",
      ].join("\n"),
    });
    assert.equal(
      error,
      "error loading pre_delivery_attempt_hook: TypeError: SyntaxError: Expected ',', got ';' " +
        "at file:///etc/postern/hooks/pre-delivery-attempt.ts:2:87",
    );
  });

  it("preDeliveryDecision() names the hook's own frame of a load error, not the worker's, even coloured", () => {
    const denied = errorOf({
      ok: false,
      failure: "load_error",
      error: 'TypeError: Requires read access to "/etc/shadow"\n' +
        "    at \x1b[0m\x1b[36mfile:///etc/postern/hooks/pre-delivery-attempt/lib.ts\x1b[0m:" +
        "\x1b[0m\x1b[33m1\x1b[0m:\x1b[0m\x1b[33m8\x1b[0m\n" +
        "    at async file:///var/lib/postern/run/hook_worker.js:233:18",
    });
    assert.match(denied, / at file:\/\/\/etc\/postern\/hooks\/pre-delivery-attempt\/lib\.ts:1:8$/);
    // Thrown by the bootstrap itself: no frame of the hook, so no location.
    const noExport = errorOf({
      ok: false,
      failure: "load_error",
      error: "TypeError: the hook module has no default export function\n" +
        "    at file:///var/lib/postern/run/hook_worker.js:236:11",
    });
    assert.equal(
      noExport,
      "error loading pre_delivery_attempt_hook: TypeError: the hook module has no default export function",
    );
    // A frame inside a function call: the location in its parentheses.
    const inCall = errorOf({
      ok: false,
      failure: "load_error",
      error: "Error: top-level await failed\n    at setup (file:///h/pre-delivery-attempt.ts:9:3)",
    });
    assert.match(inCall, / at file:\/\/\/h\/pre-delivery-attempt\.ts:9:3$/);
  });

  it("preDeliveryDecision() names a crashed worker", () => {
    const error = errorOf({ ok: false, failure: "crash", error: "the worker exited" });
    assert.match(error, /crash/);
    assert.match(error, /the worker exited/);
  });

  it("preDeliveryDecision() names a broken exchange with the worker", () => {
    const error = errorOf({ ok: false, failure: "protocol", error: "bad frame" });
    assert.match(error, /protocol/);
    assert.match(error, /bad frame/);
  });
});
