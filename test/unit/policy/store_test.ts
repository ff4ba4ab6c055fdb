import assert from "node:assert/strict";
import { afterEach, before, beforeEach, describe, it } from "node:test";
import { type Config, loadConfig } from "../../../src/config/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { restartOnlyChanges } from "../../../src/policy/restart.ts";
import {
  type PolicySnapshot,
  PolicyStore,
  type PolicyStoreOptions,
} from "../../../src/policy/store.ts";
import { deferred } from "../helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `condition` every 10 ms; fails after `limitMs`. */
async function eventually(condition: () => boolean, what: string, limitMs = 5_000) {
  for (let waited = 0; waited <= limitMs; waited += 10) {
    if (condition()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Resolves with `promise`, or fails after `limitMs`. */
async function within<T>(promise: Promise<T>, what: string, limitMs = 5_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), limitMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A copy of `config` with a different `smtp.maxRecipients`. */
function withMaxRecipients(config: Config, maxRecipients: number): Config {
  return { ...config, smtp: { ...config.smtp, maxRecipients } };
}

describe("PolicyStore", () => {
  let base: Config;
  let stores: PolicyStore[];
  let lines: string[];
  let counters: Counters;

  before(async () => {
    base = await loadConfig();
  });
  beforeEach(() => {
    stores = [];
  });
  afterEach(() => {
    for (const store of stores) store.close();
  });

  /** A store over `initial` whose load is `load`, logging into `lines`. */
  function makeStore(
    load: () => Promise<Config>,
    options: Partial<PolicyStoreOptions> = {},
    initial: Config = base,
  ): PolicyStore {
    lines = [];
    counters = new Counters();
    const logger = new Logger("debug", (line) => lines.push(line));
    const store = new PolicyStore(initial, { load, logger, counters, ...options });
    stores.push(store);
    return store;
  }

  /** Log lines at `level`. */
  const at = (level: string) => lines.filter((line) => line.includes(` level=${level} `));

  /** A load that returns `configs` in turn, then the last one again; counts its calls. */
  function sequence(...configs: Config[]) {
    const state = {
      calls: 0,
      load: () => {
        const config = configs[Math.min(state.calls, configs.length - 1)]!;
        state.calls++;
        return Promise.resolve(config);
      },
    };
    return state;
  }

  it("the epoch starts at 1 with the initial configuration", () => {
    const loadedAt = new Date("2026-01-02T03:04:05.000Z");
    const store = makeStore(() => Promise.resolve(base), { clock: () => loadedAt });
    assert.equal(store.current.epoch, 1);
    assert.equal(store.current.config, base);
    assert.equal(store.current.loadedAt, loadedAt);
    const status = store.status();
    assert.equal(status.epoch, 1);
    assert.equal(status.lastError, undefined);
    assert.deepEqual(status.pendingRestart, []);
    assert.deepEqual(status.reloads, { ok: 0, failed: 0 });
  });

  it("reload() swaps in the loaded configuration with the epoch one higher each time", async () => {
    const seven = withMaxRecipients(base, 7);
    const eight = withMaxRecipients(base, 8);
    const loads = sequence(seven, eight);
    const store = makeStore(loads.load);
    const first = store.current;
    await store.reload("api");
    assert.equal(store.current.epoch, 2);
    assert.equal(store.current.config.smtp.maxRecipients, 7);
    await store.reload("watch");
    assert.equal(store.current.epoch, 3);
    assert.equal(store.current.config.smtp.maxRecipients, 8);
    assert.equal(loads.calls, 2);
    assert.equal(store.status().epoch, 3);
    assert.deepEqual(store.status().reloads, { ok: 2, failed: 0 });
    assert.equal(counters.get("policy_reloads_total", { result: "ok" }), 2);
    assert.equal(counters.get("policy_reloads_total", { result: "error" }), 0);
    // A snapshot taken earlier is not changed by a swap.
    assert.equal(first.epoch, 1);
    assert.equal(first.config.smtp.maxRecipients, base.smtp.maxRecipients);
    const reloaded = at("info").filter((line) => line.includes('msg="policy reloaded"'));
    assert.equal(reloaded.length, 2);
    assert.match(reloaded[0]!, / epoch=2 cause=api /);
    assert.match(reloaded[1]!, / epoch=3 cause=watch /);
  });

  it("onSwap() listeners get the next and the previous snapshot", async () => {
    const store = makeStore(sequence(withMaxRecipients(base, 7)).load);
    const seen: Array<[PolicySnapshot, PolicySnapshot]> = [];
    const others: number[] = [];
    store.onSwap((next, previous) => seen.push([next, previous]));
    store.onSwap((next) => others.push(next.epoch));
    const previous = store.current;
    await store.reload("api");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]![0], store.current);
    assert.equal(seen[0]![1], previous);
    assert.equal(seen[0]![0].epoch, 2);
    assert.equal(seen[0]![1].epoch, 1);
    await store.reload("api");
    assert.equal(seen.length, 2);
    assert.equal(seen[1]![1], seen[0]![0]);
    assert.deepEqual(others, [2, 3]);
  });

  it("a failing load keeps the last good policy and records the error", async () => {
    let fail = false;
    const store = makeStore(() =>
      fail ? Promise.reject(new Error("postern.yaml line 3: bad value")) : Promise.resolve(base)
    );
    const swaps: number[] = [];
    store.onSwap((next) => swaps.push(next.epoch));
    await store.reload("api");
    const good = store.current;
    fail = true;
    await store.reload("watch");
    assert.equal(store.current, good, "the snapshot in force is kept");
    assert.equal(store.current.epoch, 2);
    assert.deepEqual(swaps, [2]);
    const status = store.status();
    assert.equal(status.lastError?.message, "postern.yaml line 3: bad value");
    assert.ok(status.lastError?.at instanceof Date);
    assert.deepEqual(status.reloads, { ok: 1, failed: 1 });
    assert.equal(counters.get("policy_reloads_total", { result: "error" }), 1);
    assert.equal(counters.get("policy_reloads_total", { result: "ok" }), 1);
    const errors = at("error");
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /policy reload failed/);
    assert.match(errors[0]!, / epoch=2 cause=watch /);
    assert.match(errors[0]!, /error="postern.yaml line 3: bad value"/);
  });

  it("a load that throws something other than an Error is recorded as text", async () => {
    const store = makeStore(() => Promise.reject("not an error object"));
    await store.reload("api");
    assert.equal(store.status().lastError?.message, "not an error object");
    assert.equal(store.current.epoch, 1);
  });

  it("lastError clears after a later successful reload", async () => {
    let fail = true;
    const store = makeStore(() =>
      fail ? Promise.reject(new Error("broken")) : Promise.resolve(base)
    );
    await store.reload("api");
    assert.equal(store.status().lastError?.message, "broken");
    fail = false;
    await store.reload("api");
    assert.equal(store.status().lastError, undefined);
    assert.equal(store.current.epoch, 2);
    assert.deepEqual(store.status().reloads, { ok: 1, failed: 1 });
    const reloaded = at("info").filter((line) => line.includes('msg="policy reloaded"'));
    assert.equal(reloaded.length, 1);
    assert.match(reloaded[0]!, / recovered=true/);
  });

  it("errors are logged at most once per interval; the delayed line has the latest error", async () => {
    let n = 0;
    const store = makeStore(() => Promise.reject(new Error(`broken ${++n}`)), {
      errorLogIntervalMs: 200,
    });
    for (let i = 0; i < 10; i++) await store.reload("watch");
    assert.equal(n, 10);
    assert.equal(counters.get("policy_reloads_total", { result: "error" }), 10);
    assert.equal(store.status().lastError?.message, "broken 10");
    assert.equal(at("error").length, 1, "one line at once");
    assert.match(at("error")[0]!, /error="broken 1"/);
    await eventually(() => at("error").length >= 2, "the delayed error line", 3_000);
    assert.match(at("error")[1]!, /error="broken 10"/);
    await sleep(600);
    assert.equal(at("error").length, 2, "nothing more while nothing more fails");
  });

  it("a failure logged at once after a late timer's time leaves no second line for that timer", async () => {
    const store = makeStore(() => Promise.reject(new Error("broken")), {
      errorLogIntervalMs: 1000,
    });
    await store.reload("watch"); // logged at once
    const logged = performance.now();
    await store.reload("watch"); // within the interval: a line is due at its end
    // The event loop is held past that time, so the timer has not run yet
    // when the next failure finds the interval over and logs at once.
    while (performance.now() < logged + 1050) { /* busy */ }
    await store.reload("watch");
    await sleep(300);
    assert.equal(at("error").length, 2, at("error").join("\n"));
  });

  it("a success within the interval cancels the delayed error line", async () => {
    let fail = true;
    const store = makeStore(
      () => fail ? Promise.reject(new Error("broken")) : Promise.resolve(base),
      {
        errorLogIntervalMs: 200,
      },
    );
    await store.reload("watch");
    await store.reload("watch");
    assert.equal(at("error").length, 1);
    fail = false;
    await store.reload("watch");
    await sleep(500);
    assert.equal(at("error").length, 1);
  });

  it("reload() calls made while a load runs are served by one more load", async () => {
    const gate = deferred();
    let calls = 0;
    const store = makeStore(async () => {
      calls++;
      if (calls === 1) await gate.promise;
      return withMaxRecipients(base, 10 + calls);
    });
    const first = store.reload("api");
    await sleep(0);
    assert.equal(calls, 1);
    const more = [1, 2, 3, 4, 5].map(() => store.reload("watch"));
    let epochWhenServed = 0;
    void more[0]!.then(() => {
      epochWhenServed = store.current.epoch;
    });
    await sleep(20);
    assert.equal(calls, 1, "nothing more starts while a load runs");
    gate.resolve();
    await within(Promise.all([first, ...more]), "all reload() promises");
    assert.equal(calls, 2, "the five calls were served by one load");
    assert.equal(store.current.epoch, 3);
    assert.equal(store.current.config.smtp.maxRecipients, 12);
    assert.equal(epochWhenServed, 3, "a queued call resolves after the load that serves it");
    await sleep(20);
    assert.equal(calls, 2);
    // Once idle, a new call starts a load of its own.
    await within(store.reload("api"), "a later reload");
    assert.equal(calls, 3);
    assert.equal(store.current.epoch, 4);
  });

  it("restart-only settings keep their running values and are reported", async () => {
    const changed: Config = {
      ...base,
      hostname: `${base.hostname}.changed`,
      dataDir: `${base.dataDir}-changed`,
      smtp: { ...base.smtp, listen: ["127.0.0.1:2626"], maxRecipients: 7 },
    };
    const loads = sequence(changed, changed, withMaxRecipients(base, 9));
    const store = makeStore(loads.load);
    await store.reload("watch");
    assert.equal(store.current.epoch, 2);
    assert.deepEqual(store.status().pendingRestart.sort(), ["data_dir", "hostname", "smtp.listen"]);
    const running = store.current.config;
    assert.deepEqual(running.smtp.listen, base.smtp.listen);
    assert.equal(running.dataDir, base.dataDir);
    assert.equal(running.hostname, base.hostname);
    assert.equal(running.smtp.maxRecipients, 7, "other settings change live");
    const warns = () => at("warn");
    assert.equal(warns().length, 3);
    for (const field of ["smtp.listen", "data_dir", "hostname"]) {
      assert.equal(
        warns().filter((line) => line.includes(` field=${field}`)).length,
        1,
        `one warning for ${field}`,
      );
    }
    assert.match(warns()[0]!, /takes effect after a restart/);

    // The same change loaded again warns no more.
    await store.reload("watch");
    assert.equal(store.current.epoch, 3);
    assert.equal(warns().length, 3);
    assert.deepEqual(store.status().pendingRestart.sort(), ["data_dir", "hostname", "smtp.listen"]);

    // Changed back: nothing is pending any more.
    await store.reload("watch");
    assert.deepEqual(store.status().pendingRestart, []);
    assert.equal(store.current.config.smtp.maxRecipients, 9);
    assert.equal(warns().length, 3);
  });

  it("close() makes reload() a no-op", async () => {
    const loads = sequence(withMaxRecipients(base, 7));
    const store = makeStore(loads.load);
    store.close();
    await within(store.reload("api"), "reload() after close()");
    assert.equal(loads.calls, 0);
    assert.equal(store.current.epoch, 1);
    assert.deepEqual(store.status().reloads, { ok: 0, failed: 0 });
  });

  it("close() while a load runs: a successful result is not swapped in", async () => {
    const gate = deferred();
    const store = makeStore(async () => {
      await gate.promise;
      return withMaxRecipients(base, 7);
    });
    const swaps: number[] = [];
    store.onSwap((next) => swaps.push(next.epoch));
    const running = store.reload("api");
    await sleep(0);
    store.close();
    gate.resolve();
    await within(running, "the reload in flight");
    assert.equal(store.current.epoch, 1);
    assert.deepEqual(swaps, []);
    assert.deepEqual(at("info"), []);
  });

  it("close() while a load runs: a failure of it is not logged", async () => {
    const gate = deferred();
    const store = makeStore(async () => {
      await gate.promise;
      throw new Error("broken after close");
    });
    const running = store.reload("api");
    await sleep(0);
    store.close();
    gate.resolve();
    await within(running, "the reload in flight");
    assert.equal(store.current.epoch, 1);
    assert.deepEqual(at("error"), [], "close() stops logging");
  });

  it("a listener that throws is logged and does not stop the swap or other listeners", async () => {
    const store = makeStore(sequence(withMaxRecipients(base, 7)).load);
    const later: number[] = [];
    store.onSwap(() => {
      throw new Error("listener exploded");
    });
    store.onSwap((next) => later.push(next.epoch));
    await within(store.reload("api"), "the reload");
    assert.equal(store.current.epoch, 2);
    assert.equal(store.current.config.smtp.maxRecipients, 7);
    assert.deepEqual(later, [2]);
    assert.equal(store.status().reloads.ok, 1);
    const errors = at("error");
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /applying the policy failed in part/);
    assert.match(errors[0]!, / epoch=2 /);
    assert.match(errors[0]!, /error="listener exploded"/);
    assert.equal(at("info").filter((line) => line.includes("policy reloaded")).length, 1);
  });
});

describe("restartOnlyChanges", () => {
  let base: Config;
  before(async () => {
    base = await loadConfig();
  });

  it("restartOnlyChanges() reports nothing and returns the next config when nothing differs", () => {
    const next = withMaxRecipients(base, 3);
    const { changed, config } = restartOnlyChanges(base, next);
    assert.deepEqual(changed, []);
    assert.equal(config, next);
  });

  it("restartOnlyChanges() names each restart-only field and keeps its running value", () => {
    const next: Config = {
      ...base,
      hostname: "other.example",
      dataDir: "/elsewhere",
      smtp: { ...base.smtp, listen: [...base.smtp.listen, "[::1]:2525"], maxRecipients: 3 },
    };
    const { changed, config } = restartOnlyChanges(base, next);
    assert.deepEqual(changed, ["smtp.listen", "data_dir", "hostname"]);
    assert.deepEqual(config.smtp.listen, base.smtp.listen);
    assert.equal(config.dataDir, base.dataDir);
    assert.equal(config.hostname, base.hostname);
    assert.equal(config.smtp.maxRecipients, 3);
    assert.deepEqual(next.smtp.listen.length, base.smtp.listen.length + 1, "next is not mutated");
  });

  it("restartOnlyChanges() keeps the running tls.acme", () => {
    const acme = {
      email: "a@ours.test",
      names: ["mx.ours.test"],
      directoryUrl: "https://ca.test/dir",
      caPem: undefined,
      challenge: "http-01" as const,
      httpListen: "0.0.0.0:80",
      httpsListen: "0.0.0.0:443",
      renew: true,
      retryInitialMs: 60_000,
    };
    const running: Config = { ...base, acme };
    const next: Config = {
      ...base,
      acme: { ...acme, names: ["mx.ours.test", "mta-sts.ours.test"] },
    };
    const { changed, config } = restartOnlyChanges(running, next);
    assert.deepEqual(changed, ["tls.acme"]);
    assert.equal(config.acme, acme);
    assert.deepEqual(restartOnlyChanges(running, { ...base, acme: { ...acme } }).changed, []);
  });

  it("restartOnlyChanges() treats the same listen addresses in a new array as unchanged", () => {
    const next: Config = { ...base, smtp: { ...base.smtp, listen: [...base.smtp.listen] } };
    assert.deepEqual(restartOnlyChanges(base, next).changed, []);
  });
});
