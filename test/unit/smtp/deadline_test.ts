import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SessionDeadline } from "../../../src/smtp/deadline.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds, for at most 5 s. */
async function until(check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 500 && !check(); i++) await sleep(10);
  return check();
}

describe("SessionDeadline", () => {
  it("SessionDeadline expires once when a command does not arrive in time", async () => {
    let expired = 0;
    const deadline = new SessionDeadline({ commandTimeoutMs: 20, minDataRate: 1 }, () => expired++);
    deadline.awaitCommand();
    assert.ok(await until(() => expired > 0));
    await sleep(60);
    assert.equal(expired, 1);
  });

  it("SessionDeadline does not expire while paused (Postern is working)", async () => {
    let expired = 0;
    const deadline = new SessionDeadline({ commandTimeoutMs: 20, minDataRate: 1 }, () => expired++);
    deadline.awaitCommand();
    deadline.pause();
    await sleep(150);
    assert.equal(expired, 0);
    // Owed again, it runs again.
    deadline.awaitCommand();
    assert.ok(await until(() => expired === 1));
    deadline.stop();
  });

  it("SessionDeadline gives a message its command timeout plus bytes / min_data_rate", async () => {
    let expired = 0;
    let bytes = 0;
    const deadline = new SessionDeadline(
      { commandTimeoutMs: 20, minDataRate: 1000 },
      () => expired++,
    );
    // 5,000 bytes at 1,000 bytes/s: 5 s more than the 20 ms.
    bytes = 5000;
    deadline.awaitData(() => bytes, () => true);
    await sleep(150);
    assert.equal(expired, 0);
    deadline.stop();

    // No data: the bare command timeout.
    let cut = 0;
    const idle = new SessionDeadline({ commandTimeoutMs: 20, minDataRate: 1000 }, () => cut++);
    idle.awaitData(() => 0, () => true);
    assert.ok(await until(() => cut === 1));
  });

  it("SessionDeadline stops counting once the final dot is in", async () => {
    let expired = 0;
    let receiving = true;
    const deadline = new SessionDeadline({ commandTimeoutMs: 20, minDataRate: 1 }, () => expired++);
    deadline.awaitData(() => 0, () => receiving);
    receiving = false;
    await sleep(150);
    assert.equal(expired, 0);
    deadline.stop();
  });

  it("SessionDeadline with a command timeout of 0 never expires", async () => {
    let expired = 0;
    const deadline = new SessionDeadline({ commandTimeoutMs: 0, minDataRate: 1 }, () => expired++);
    deadline.awaitCommand();
    await sleep(50);
    assert.equal(expired, 0);
  });

  it("SessionDeadline never asks a timer for more than 2^31-1 ms, whatever the message's size", () => {
    // 3 MB at 1 byte/s is owed for 35 days: past what setTimeout can wait,
    // which then fires after 1 ms, finds the deadline ahead, and again.
    const delays: number[] = [];
    const original = globalThis.setTimeout;
    globalThis.setTimeout = ((handler: () => void, ms: number) => {
      delays.push(ms);
      return original(handler, 0);
    }) as typeof setTimeout;
    let deadline: SessionDeadline;
    try {
      deadline = new SessionDeadline({ commandTimeoutMs: 600_000, minDataRate: 1 }, () => {});
      deadline.awaitData(() => 3_000_000, () => true);
    } finally {
      globalThis.setTimeout = original;
    }
    deadline.stop();
    assert.equal(delays.length, 1);
    assert.equal(delays[0], 2 ** 31 - 1);
  });
});
