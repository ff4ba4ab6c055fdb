/**
 * ModulePool calls that succeed, against real deno workers: the hook's
 * value, module state kept across calls, calls that overlap on one worker or
 * spread over several, the message streamed to the hook (or not pulled when
 * the hook does not read it), and the sandbox the hook runs in.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  countedChunks,
  fixture,
  logged,
  startPool,
  usePoolFixture,
  valueOf,
} from "./module_pool_setup.ts";
import { eventually } from "./pool_fixture.ts";

/** The SHA-256 of `chunks` together, in hex. */
function sha256(chunks: Uint8Array[]): string {
  const hash = createHash("sha256");
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest("hex");
}

describe("ModulePool", () => {
  usePoolFixture();

  it("call() resolves with the value the hook returns", async () => {
    const pool = await startPool(
      `export default async function (input) { return { got: input, sum: input.a + input.b }; }`,
    );
    assert.deepEqual(await pool.call({ a: 2, b: 3 }), {
      ok: true,
      value: { got: { a: 2, b: 3 }, sum: 5 },
    });
    assert.equal(pool.workerCount, 1);
    assert.equal(pool.restarts, 0);
    assert.equal(pool.loadError, undefined);
  });

  it("call() keeps module state across calls on the same worker", async () => {
    const pool = await startPool(
      `let calls = 0;\nexport default () => ({ calls: ++calls, pid: Deno.pid });`,
    );
    const results = [];
    for (let i = 0; i < 3; i++) results.push(valueOf(await pool.call({})) as { calls: number });
    assert.deepEqual(results.map((r) => r.calls), [1, 2, 3]);
    assert.equal(new Set(results.map((r) => (r as unknown as { pid: number }).pid)).size, 1);
  });

  it("call() runs calls concurrently on one worker when the hook awaits", async () => {
    const pool = await startPool(`
export default async function (input) {
  const start = Date.now();
  await new Promise((r) => setTimeout(r, 200));
  return { n: input.n, start, end: Date.now(), pid: Deno.pid };
}`);
    valueOf(await pool.call({ n: 0 })); // the worker is up
    const [a, b] = (await Promise.all([pool.call({ n: 1 }), pool.call({ n: 2 })])).map(
      (o) => valueOf(o) as { n: number; start: number; end: number; pid: number },
    );
    assert.equal(a!.n, 1);
    assert.equal(b!.n, 2);
    assert.equal(a!.pid, b!.pid, "both calls ran on the one worker");
    // Each call started before the other ended: they overlapped.
    assert.ok(a!.start < b!.end && b!.start < a!.end, JSON.stringify({ a, b }));
  });

  it("call() streams the message to a hook that reads it, byte for byte", async () => {
    const pool = await startPool(`
export default async function (input) {
  const bytes = new Uint8Array(await new Response(input.message).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return {
    length: bytes.byteLength,
    sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    id: input.id,
  };
}`);
    const chunks: Uint8Array[] = [];
    for (let c = 0; c < 20; c++) {
      const chunk = new Uint8Array(64 * 1024 + c);
      for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31 + c * 7) & 0xff;
      chunks.push(chunk);
    }
    chunks.push(new TextEncoder().encode("\r\n.\r\nlast line ünï\r\n"));
    const { iterable, stats } = countedChunks(chunks);
    const value = valueOf(await pool.call({ id: "m1" }, iterable));
    assert.deepEqual(value, {
      length: chunks.reduce((n, c) => n + c.byteLength, 0),
      sha256: sha256(chunks),
      id: "m1",
    });
    // One pull per chunk, and one that found the end.
    assert.equal(stats.pulls, chunks.length + 1);
  });

  it("call() keeps the messages of concurrent calls apart", async () => {
    const pool = await startPool(`
export default async function (input) {
  const reader = input.message.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    await new Promise((r) => setTimeout(r, 5));
  }
  return { tag: input.tag, text };
}`);
    const make = (tag: string) =>
      countedChunks(Array.from({ length: 10 }, (_, i) => new TextEncoder().encode(`${tag}${i};`)));
    const a = make("a");
    const b = make("b");
    const [ra, rb] = await Promise.all([
      pool.call({ tag: "A" }, a.iterable),
      pool.call({ tag: "B" }, b.iterable),
    ]);
    const expected = (tag: string) => Array.from({ length: 10 }, (_, i) => `${tag}${i};`).join("");
    assert.deepEqual(valueOf(ra), { tag: "A", text: expected("a") });
    assert.deepEqual(valueOf(rb), { tag: "B", text: expected("b") });
  });

  it("call() pulls no chunk of the message when the hook does not read it, and closes the source", async () => {
    const pool = await startPool(`export default (input) => ({ hasMessage: !!input.message });`);
    const { iterable, stats } = countedChunks([new TextEncoder().encode("never read")]);
    assert.deepEqual(await pool.call({}, iterable), { ok: true, value: { hasMessage: true } });
    assert.equal(stats.pulls, 0);
    await eventually(() => stats.returned, "the message source to be closed");
  });

  it("call() survives a hook that cancels the message while a chunk is on its way, and runs each call once", async () => {
    const pool = await startPool(`
      let calls = 0;
      export default async (input) => {
        calls++;
        const reader = input.message.getReader();
        const pending = reader.read();
        // Let the read reach Postern (a pull), then cancel before its answer.
        await new Promise((r) => setTimeout(r, 20));
        await reader.cancel();
        await pending.catch(() => {});
        // Still running when the chunk arrives.
        await new Promise((r) => setTimeout(r, 300));
        return calls;
      };`);
    // The chunk comes after the hook has cancelled its stream.
    const late: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        await new Promise((r) => setTimeout(r, 100));
        yield new TextEncoder().encode("too late");
      },
    };
    assert.deepEqual(await pool.call({}, late), { ok: true, value: 1 });
    await new Promise((r) => setTimeout(r, 200));
    // The same worker, and the first call was not run again.
    assert.deepEqual(await pool.call({}, late), { ok: true, value: 2 });
    assert.equal(pool.restarts, 0);
    assert.deepEqual(logged("hook output"), []);
  });

  it("call() gives the hook no message stream when no message is passed", async () => {
    const pool = await startPool(`export default (input) => ({ keys: Object.keys(input) });`);
    assert.deepEqual(await pool.call({ address: "a@b" }), {
      ok: true,
      value: { keys: ["address"] },
    });
  });

  it("call() runs the hook with reads limited to its own files and no env, write or net", async () => {
    const secret = join(fixture.root, "secret.txt");
    await writeFile(secret, "top secret");
    const pool = await startPool(`
export default async function (input) {
  const attempts = {
    own: () => Deno.readTextFile(input.own),
    secret: () => Deno.readTextFile(input.secret),
    env: async () => Deno.env.get("HOME"),
    write: () => Deno.writeTextFile(input.write, "x"),
    net: async () => (await Deno.connect({ hostname: "127.0.0.1", port: 9 })).close(),
  };
  const results = {};
  for (const [key, attempt] of Object.entries(attempts)) {
    try {
      results[key] = ["allowed", await attempt()];
    } catch (err) {
      results[key] = [err.name];
    }
  }
  return results;
}`);
    const ownDir = join(fixture.hooksDir, pool.options.name);
    await mkdir(ownDir);
    await writeFile(join(ownDir, "list.txt"), "own data");
    const value = valueOf(
      await pool.call({
        own: join(ownDir, "list.txt"),
        secret,
        write: join(ownDir, "written.txt"),
      }),
    ) as Record<string, string[]>;
    assert.deepEqual(value.own, ["allowed", "own data"]);
    for (const key of ["secret", "env", "write", "net"]) {
      assert.match(value[key]![0]!, /^(NotCapable|PermissionDenied)$/, `${key}: ${value[key]}`);
    }
  });

  it("call() spreads concurrent calls over the workers, least busy first", async () => {
    const pool = await startPool(
      `
export default async function () {
  await new Promise((r) => setTimeout(r, 100));
  return Deno.pid;
}`,
      { workers: 2 },
    );
    assert.equal(pool.workerCount, 2);
    const pids = (await Promise.all([pool.call({}), pool.call({})])).map(valueOf);
    assert.notEqual(pids[0], pids[1]);
    assert.equal(pool.restarts, 0);
  });
});
