import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IdleTrim, type TrimTimers } from "../../../src/runtime/idle_trim.ts";

/** A clock and timers that move only when the test says time has passed. */
class ManualTimers implements TrimTimers {
  #now = 0;
  #pending: Array<{ at: number; callback: () => void }> = [];

  now(): number {
    return this.#now;
  }

  set(callback: () => void, ms: number): void {
    this.#pending.push({ at: this.#now + ms, callback });
  }

  get pending(): number {
    return this.#pending.length;
  }

  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#pending.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#pending.splice(this.#pending.indexOf(due), 1);
      this.#now = due.at;
      due.callback();
    }
    this.#now = end;
  }
}

describe("IdleTrim", () => {
  it("trims once a quiet spell follows work, and never while notes keep coming", () => {
    const timers = new ManualTimers();
    let trims = 0;
    const trim = new IdleTrim(() => trims++, 60_000, timers);
    for (let i = 0; i < 100; i++) {
      trim.note();
      timers.advance(1_000);
    }
    assert.equal(trims, 0, "mail every second: no trim");
    assert.equal(timers.pending, 1, "one timer, however many notes");
    timers.advance(58_999);
    assert.equal(trims, 0);
    timers.advance(1);
    assert.equal(trims, 1, "60 s after the last note");
    timers.advance(600_000);
    assert.equal(trims, 1, "once per spell: a quiet server is not woken again");
    assert.equal(timers.pending, 0);
  });

  it("trims again after the next work and its quiet spell", () => {
    const timers = new ManualTimers();
    let trims = 0;
    const trim = new IdleTrim(() => trims++, 10, timers);
    trim.note();
    timers.advance(10);
    trim.note();
    trim.note();
    timers.advance(10);
    assert.equal(trims, 2);
  });

  it("never trims without work", () => {
    const timers = new ManualTimers();
    let trims = 0;
    new IdleTrim(() => trims++, 10, timers);
    timers.advance(1_000);
    assert.equal(trims, 0);
    assert.equal(timers.pending, 0);
  });
});
