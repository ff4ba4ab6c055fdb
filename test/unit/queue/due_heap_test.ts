/**
 * DueHeap: earliest due time first, ties in arrival order, and records
 * that keep the time they were pushed with (the queue skips stale ones).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DueHeap } from "../../../src/queue/due_heap.ts";

describe("DueHeap", () => {
  it("pops in due-time order, ties in arrival order", () => {
    const heap = new DueHeap<{ dueAt: number; name: string }>();
    const times = [50, 10, 30, 10, 70, 20, 30, 0];
    times.forEach((dueAt, i) => heap.push({ dueAt, name: `e${i}` }));
    const out: string[] = [];
    for (let top = heap.pop(); top; top = heap.pop()) out.push(`${top.at}:${top.entry.name}`);
    assert.deepEqual(out, [
      "0:e7",
      "10:e1",
      "10:e3",
      "20:e5",
      "30:e2",
      "30:e6",
      "50:e0",
      "70:e4",
    ]);
    assert.equal(heap.size, 0);
    assert.equal(heap.peek(), undefined);
  });

  it("keeps the time a record was pushed with when the entry changes later", () => {
    const heap = new DueHeap<{ dueAt: number }>();
    const entry = { dueAt: 100 };
    heap.push(entry);
    entry.dueAt = 5;
    heap.push(entry);
    assert.deepEqual(heap.pop(), { at: 5, seq: 1, entry });
    assert.equal(heap.peek()?.at, 100, "the older record is still there, now stale");
  });

  it("stays ordered through many random pushes and pops", () => {
    const heap = new DueHeap<{ dueAt: number }>();
    let seed = 7;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const popped: number[] = [];
    for (let round = 0; round < 2000; round++) {
      heap.push({ dueAt: Math.floor(random() * 1000) });
      if (random() < 0.4) popped.push(heap.pop()!.at);
    }
    const rest: number[] = [];
    for (let top = heap.pop(); top; top = heap.pop()) rest.push(top.at);
    assert.deepEqual(rest, [...rest].sort((a, b) => a - b));
    assert.equal(popped.length + rest.length, 2000);
  });
});
