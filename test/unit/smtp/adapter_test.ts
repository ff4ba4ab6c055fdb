import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { complete, reply, replyError, type SmtpReply } from "../../../src/smtp/mod.ts";
import type { NodeCallback } from "../../../src/smtp/adapter.ts";

interface Outcome {
  calls: unknown[][];
  unexpected: unknown[];
}

/** Runs complete() and waits until the callback has been called. */
async function run(handler: () => Promise<SmtpReply | undefined>): Promise<Outcome> {
  const outcome: Outcome = { calls: [], unexpected: [] };
  let done!: () => void;
  const called = new Promise<void>((resolve) => {
    done = resolve;
  });
  const callback: NodeCallback = (...args: unknown[]) => {
    outcome.calls.push(args);
    done();
  };
  complete(handler, callback, (err) => outcome.unexpected.push(err));
  await called;
  // Give a second (wrong) call every chance to happen.
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  return outcome;
}

describe("complete", () => {
  it("complete() calls back once with no error when the handler returns undefined", async () => {
    const { calls, unexpected } = await run(() => Promise.resolve(undefined));
    assert.deepEqual(calls, [[null]]);
    assert.deepEqual(unexpected, []);
  });

  it("complete() calls back once with the message when the reply is below 400", async () => {
    const { calls } = await run(() => Promise.resolve(reply(250, "2.1.5", "Recipient ok")));
    assert.deepEqual(calls, [[null, "2.1.5 Recipient ok"]]);
  });

  it("complete() treats 399 as success and 400 as a refusal", async () => {
    const ok = await run(() => Promise.resolve(reply(354, "2.0.0", "Go ahead")));
    assert.deepEqual(ok.calls, [[null, "2.0.0 Go ahead"]]);
    const refused = await run(() => Promise.resolve(reply(400, "4.0.0", "Edge")));
    assert.equal(refused.calls.length, 1);
    const err = refused.calls[0]![0] as Error & { responseCode: number };
    assert.equal(err.responseCode, 400);
  });

  it("complete() calls back with an Error carrying responseCode when the reply is 5xx", async () => {
    const { calls, unexpected } = await run(() =>
      Promise.resolve(reply(550, "5.1.1", "No such user here"))
    );
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.length, 1);
    const err = calls[0]![0];
    assert.ok(err instanceof Error);
    assert.equal((err as Error & { responseCode: number }).responseCode, 550);
    assert.equal(err.message, "5.1.1 No such user here");
    assert.deepEqual(unexpected, []);
  });

  it("complete() calls back with 451 4.3.0 and reports the error when the handler rejects", async () => {
    const boom = new Error("disk on fire");
    const { calls, unexpected } = await run(() => Promise.reject(boom));
    assert.equal(calls.length, 1);
    const err = calls[0]![0] as Error & { responseCode: number };
    assert.equal(err.responseCode, 451);
    assert.equal(err.message, "4.3.0 Local error in processing, try again later");
    assert.deepEqual(unexpected, [boom]);
  });

  it("complete() calls back with 451 when an async handler throws", async () => {
    const { calls, unexpected } = await run(async () => {
      await Promise.resolve();
      throw new TypeError("bug");
    });
    assert.equal((calls[0]![0] as { responseCode: number }).responseCode, 451);
    assert.equal(calls.length, 1);
    assert.ok(unexpected[0] instanceof TypeError);
  });

  it("complete() calls back with 451 when the handler throws before returning a promise", async () => {
    const boom = new Error("sync bug");
    let escaped: unknown = undefined;
    const outcome: Outcome = { calls: [], unexpected: [] };
    try {
      complete(
        () => {
          throw boom;
        },
        (...args: unknown[]) => outcome.calls.push(args),
        (err) => outcome.unexpected.push(err),
      );
    } catch (err) {
      escaped = err;
    }
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
    assert.equal(escaped, undefined, "the exception escaped into the caller");
    assert.equal(outcome.calls.length, 1);
    assert.equal((outcome.calls[0]![0] as { responseCode: number }).responseCode, 451);
    assert.deepEqual(outcome.unexpected, [boom]);
  });
});

describe("replyError", () => {
  it("replyError() builds an Error with the code and the enhanced text", () => {
    const err = replyError(reply(452, "4.5.3", "Too many recipients"));
    assert.ok(err instanceof Error);
    assert.equal(err.responseCode, 452);
    assert.equal(err.message, "4.5.3 Too many recipients");
  });
});
