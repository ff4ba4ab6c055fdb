/**
 * A reload that throws where nothing is expected to (here the clock that
 * dates the new policy) while another reload waits behind it: the first is
 * a failed reload, not a rejection (its callers start it and forget it, and
 * an unhandled rejection ends the process on Deno), and the one waiting
 * still runs. It was chained on the first one's success alone, so it never
 * ran, and stayed queued: every request made during a later reload got that
 * old failure and no reload.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { PolicyStore } from "../../../src/policy/store.ts";
import { deferred } from "../helpers.ts";

describe("PolicyStore: a reload that throws", () => {
  it("still runs the reload asked for meanwhile, and later ones", async () => {
    const base = await loadConfig();
    let loads = 0;
    let gate = deferred<void>();
    const load = async () => {
      loads++;
      await gate.promise;
      return { ...base, smtp: { ...base.smtp, maxRecipients: 100 + loads } };
    };
    let clockCalls = 0;
    const clock = () => {
      // The first call dates the initial policy; the second, the first reload's.
      if (++clockCalls === 2) throw new Error("the clock failed");
      return new Date("2026-12-06T00:00:00Z");
    };
    const store = new PolicyStore(base, {
      load,
      logger: new Logger("error", () => {}),
      counters: new Counters(),
      clock,
    });
    try {
      const first = store.reload("api");
      const second = store.reload("api");
      gate.resolve();
      // Counted and kept as a failed reload, not a rejection that a caller
      // who started it and forgot it (a save, SIGHUP) would leave unhandled.
      await first;
      assert.equal(store.status().reloads.failed, 1);
      assert.equal(store.status().lastError?.message, "the clock failed");
      await second;
      assert.equal(loads, 2, "the reload asked for meanwhile did not run");
      assert.equal(store.current.config.smtp.maxRecipients, 102);
      // A reload asked for while another runs is served after it.
      gate = deferred<void>();
      const third = store.reload("api");
      const fourth = store.reload("api");
      gate.resolve();
      await third;
      await fourth;
      assert.equal(loads, 4);
      assert.equal(store.current.config.smtp.maxRecipients, 104);
    } finally {
      store.close();
    }
  });
});
