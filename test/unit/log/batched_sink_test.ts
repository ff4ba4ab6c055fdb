import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate } from "node:timers";
import { BatchedSink } from "../../../src/log/batched_sink.ts";

/** Resolves after the sink's own end-of-turn write has run. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("BatchedSink", () => {
  it("writes the lines of one turn with one call, in order, at the end of the turn", async () => {
    const writes: string[] = [];
    const sink = new BatchedSink((text) => writes.push(text));
    sink.write("a=1\n");
    await Promise.resolve();
    sink.write("b=2\n");
    sink.write("c=3\n");
    assert.deepEqual(writes, [], "nothing is written before the turn ends");
    await nextTurn();
    assert.deepEqual(writes, ["a=1\nb=2\nc=3\n"]);
    sink.write("d=4\n");
    await nextTurn();
    assert.deepEqual(writes, ["a=1\nb=2\nc=3\n", "d=4\n"]);
  });

  it("writes nothing for a turn without lines", async () => {
    const writes: string[] = [];
    const sink = new BatchedSink((text) => writes.push(text));
    sink.flush();
    await nextTurn();
    assert.deepEqual(writes, []);
  });

  it("flush() writes what is pending at once, and the end of the turn adds nothing", async () => {
    const writes: string[] = [];
    const sink = new BatchedSink((text) => writes.push(text));
    sink.write("qid=x event=queued\n");
    sink.flush();
    assert.deepEqual(writes, ["qid=x event=queued\n"]);
    await nextTurn();
    assert.deepEqual(writes, ["qid=x event=queued\n"]);
  });

  it("writes at once when a turn has gathered 64 KiB, and keeps every line", async () => {
    const writes: string[] = [];
    const sink = new BatchedSink((text) => writes.push(text));
    const line = `${"x".repeat(99)}\n`;
    for (let i = 0; i < 1000; i++) sink.write(line);
    assert.ok(writes.length >= 1, "a long turn does not hold all of its lines");
    assert.ok(writes.every((w) => w.length <= 64 * 1024 + line.length));
    await nextTurn();
    assert.equal(writes.join(""), line.repeat(1000));
  });
});
