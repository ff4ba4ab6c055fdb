/**
 * Shared state for hooks: requests checked with valibot (keys, values and
 * ttl bounded), and the worker protocol against real deno workers: a hook's
 * `shared.*` calls reach the store with the hook point's name, without any
 * network grant, and fail clearly without a store.
 */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import {
  answerShared,
  MAX_SHARED_VALUE,
  type SharedRequest,
  type SharedStore,
} from "../../../src/hooks/shared_state.ts";
import { PoolFixture } from "./pool_fixture.ts";

/** An in-memory store that records what it was asked, by hook. */
class MemoryStore implements SharedStore {
  asked: Array<{ hook: string; request: SharedRequest }> = [];
  values = new Map<string, string>();
  run(hook: string, request: SharedRequest): Promise<number | string | null> {
    this.asked.push({ hook, request });
    const key = `${hook}/${request.key}`;
    if (request.op === "increment") {
      const n = Number(this.values.get(key) ?? "0") + request.by;
      this.values.set(key, String(n));
      return Promise.resolve(n);
    }
    if (request.op === "get") return Promise.resolve(this.values.get(key) ?? null);
    this.values.set(key, request.value);
    return Promise.resolve(null);
  }
}

describe("answerShared", () => {
  it("runs a valid request against the store with the hook's name", async () => {
    const store = new MemoryStore();
    const answer = await answerShared(store, "pre-delivery-attempt", {
      t: "shared",
      rid: 7,
      op: "increment",
      key: "domain:example.com",
      by: 2,
      ttl: 3600,
    });
    assert.deepEqual(answer, { t: "shared_result", rid: 7, ok: true, value: 2 });
    assert.equal(store.asked[0]!.hook, "pre-delivery-attempt");
  });

  it("refuses bad keys, values and ttls without asking the store", async () => {
    const store = new MemoryStore();
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ op: "get", key: "" }, /key must be 1 or more printable/],
      [{ op: "get", key: "with space" }, /printable ASCII/],
      [{ op: "get", key: "k".repeat(201) }, /at most 200/],
      [{ op: "set", key: "k", value: "v".repeat(MAX_SHARED_VALUE + 1), ttl: 0 }, /at most 4096/],
      [{ op: "set", key: "k", value: 5, ttl: 0 }, /value must be text/],
      [{ op: "increment", key: "k", by: 1.5, ttl: 0 }, /by must be a whole number/],
      [{ op: "increment", key: "k", by: 1, ttl: -1 }, /ttl must not be negative/],
      [{ op: "increment", key: "k", by: 1, ttl: 1e9 }, /ttl must be at most/],
      [{ op: "get", key: "k", extra: 1 }, /./],
      [{ op: "delete", key: "k" }, /./],
    ];
    for (const [fields, message] of bad) {
      const answer = await answerShared(store, "h", { t: "shared", rid: 1, ...fields });
      assert.ok(answer && !answer.ok, JSON.stringify(fields));
      assert.match(answer.error, message);
    }
    assert.equal(store.asked.length, 0);
    // No request ID: nothing can be answered.
    assert.equal(await answerShared(store, "h", { t: "shared", op: "get", key: "k" }), undefined);
  });

  it("says that shared state needs the cluster setting when there is no store", async () => {
    const answer = await answerShared(undefined, "h", { t: "shared", rid: 1, op: "get", key: "k" });
    assert.ok(answer && !answer.ok);
    assert.match(answer.error, /needs the cluster setting/);
  });

  it("passes a store's failure on to the hook", async () => {
    const failing: SharedStore = { run: () => Promise.reject(new Error("server down")) };
    const answer = await answerShared(failing, "h", { t: "shared", rid: 3, op: "get", key: "k" });
    assert.deepEqual(answer, {
      t: "shared_result",
      rid: 3,
      ok: false,
      error: "shared.get: server down",
    });
  });
});

describe("shared state over the hook channel", () => {
  let fixture: PoolFixture;

  before(async () => {
    fixture = await PoolFixture.create("postern-shared-");
  });
  afterEach(() => fixture.killAll());
  after(() => fixture.remove());

  async function startPool(source: string, shared: SharedStore | undefined) {
    const pool = await fixture.start(source, { shared });
    return { pool, name: pool.options.name };
  }

  it("a hook counts, sets and gets through Postern, with no network grant", async () => {
    const store = new MemoryStore();
    const { pool, name } = await startPool(
      `export default async function (input, state, shared) {
        const a = await shared.increment("n");
        const b = await shared.increment("n", 5, 60);
        await shared.set("last", input.who, 10);
        const both = await Promise.all([shared.get("last"), shared.get("missing")]);
        return { a, b, both };
      }`,
      store,
    );
    assert.deepEqual(await pool.call({ who: "x" }), {
      ok: true,
      value: { a: 1, b: 6, both: ["x", null] },
    });
    assert.deepEqual(store.asked.map((a) => [a.hook, a.request.op, a.request.key]), [
      [name, "increment", "n"],
      [name, "increment", "n"],
      [name, "set", "last"],
      [name, "get", "last"],
      [name, "get", "missing"],
    ]);
    assert.deepEqual(store.asked[1]!.request, {
      t: "shared",
      rid: 2,
      op: "increment",
      key: "n",
      by: 5,
      ttl: 60,
    });
  });

  it("a refused request rejects in the hook, which may catch it", async () => {
    const { pool } = await startPool(
      `export default async function (input, state, shared) {
        try {
          await shared.get("bad key");
          return "no error";
        } catch (err) {
          return String(err.message);
        }
      }`,
      new MemoryStore(),
    );
    const outcome = await pool.call({});
    assert.ok(outcome.ok);
    assert.match(String(outcome.value), /^shared\.get: the key must be 1 or more printable/);
  });

  it("without a store, a shared call is a hook error that says why", async () => {
    const { pool } = await startPool(
      `export default async function (input, state, shared) { return await shared.increment("n"); }`,
      undefined,
    );
    const outcome = await pool.call({});
    assert.equal(outcome.ok, false);
    assert.ok(!outcome.ok && outcome.failure === "hook_error");
    assert.match(!outcome.ok ? outcome.error : "", /needs the cluster setting/);
  });

  it("a shared call after the hook's call ended rejects in the worker; the worker lives on", async () => {
    const store = new MemoryStore();
    const { pool } = await startPool(
      `export default async function (input, state, shared) {
        if (input.keep) { state.shared = shared; return "kept"; }
        return await state.shared.get("k").then(() => "answered", (e) => e.message);
      }`,
      store,
    );
    assert.deepEqual(await pool.call({ keep: true }), { ok: true, value: "kept" });
    assert.deepEqual(await pool.call({}), {
      ok: true,
      value: "shared.get was called after the hook's call ended",
    });
    assert.equal(store.asked.length, 0);
  });
});
