import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GcHint } from "../../../src/runtime/gc_hint.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("GcHint", () => {
  it("asks for one collection for a run of notes, after the delay", async () => {
    let collections = 0;
    const hint = new GcHint(() => collections++, 20);
    for (let i = 0; i < 1000; i++) hint.note();
    assert.equal(collections, 0, "not at once");
    // Waits on the event, not on a guess of the timer's lateness.
    while (collections === 0) await sleep(5);
    await sleep(60);
    assert.equal(collections, 1);
  });

  it("asks again for notes after a collection, and never without a note", async () => {
    let collections = 0;
    const hint = new GcHint(() => collections++, 5);
    hint.note();
    while (collections === 0) await sleep(2);
    await sleep(40);
    assert.equal(collections, 1, "a quiet hint asks for nothing more");
    hint.note();
    hint.note();
    while (collections === 1) await sleep(2);
    await sleep(40);
    assert.equal(collections, 2);
  });
});
