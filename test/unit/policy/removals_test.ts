/**
 * Removals get a second look: lostRecipients() names what a new policy
 * drops, and confirmRemovals() reads again after the grace period before
 * letting a removal through, while additions pass at once.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Config, DomainConfig } from "../../../src/config/mod.ts";
import { confirmRemovals, lostRecipients } from "../../../src/policy/mod.ts";

function config(domains: Record<string, { users?: string[]; aliases?: string[]; any?: boolean }>) {
  const map = new Map<string, DomainConfig>();
  for (const [name, d] of Object.entries(domains)) {
    map.set(name, {
      name,
      anyUser: d.any ?? false,
      users: new Set(d.users ?? []),
      aliases: new Map((d.aliases ?? []).map((a) => [a, []])),
      passwords: new Map(),
      dkim: undefined,
    });
  }
  return { domains: map } as unknown as Config;
}

describe("lostRecipients", () => {
  const base = config({ "a.test": { users: ["u1", "u2"], aliases: ["sales"] } });

  it("is undefined for the same recipients or more", () => {
    assert.equal(lostRecipients(base, base), undefined);
    const more = config({
      "a.test": { users: ["u1", "u2", "u3"], aliases: ["sales", "info"] },
      "b.test": { users: ["x"] },
    });
    assert.equal(lostRecipients(base, more), undefined);
  });

  it("names a lost domain, user, alias or catch-all", () => {
    assert.equal(lostRecipients(base, config({})), "domain a.test");
    assert.equal(
      lostRecipients(base, config({ "a.test": { users: ["u1"], aliases: ["sales"] } })),
      "user u2@a.test",
    );
    assert.equal(
      lostRecipients(base, config({ "a.test": { users: ["u1", "u2"] } })),
      "alias sales@a.test",
    );
    assert.equal(
      lostRecipients(config({ "c.test": { any: true } }), config({ "c.test": {} })),
      "any_user of c.test",
    );
  });
});

describe("confirmRemovals", () => {
  const current = config({ "a.test": { users: ["u1", "u2"] } });

  it("passes an addition through after one load, at once", async () => {
    let loads = 0;
    const added = config({ "a.test": { users: ["u1", "u2", "u3"] } });
    const load = confirmRemovals(
      () => {
        loads++;
        return Promise.resolve(added);
      },
      () => current,
      10_000,
    );
    const started = Date.now();
    assert.equal(await load(), added);
    assert.equal(loads, 1);
    assert.ok(Date.now() - started < 1_000);
  });

  it("reads again after the grace period and uses the second read (a write in progress)", async () => {
    const truncated = config({ "a.test": {} });
    const written = config({ "a.test": { users: ["u1", "u2", "u4"] } });
    const reads = [truncated, written];
    const load = confirmRemovals(() => Promise.resolve(reads.shift()!), () => current, 30);
    const started = Date.now();
    assert.equal(await load(), written);
    assert.ok(Date.now() - started >= 25, "waited for the grace period");
    assert.equal(reads.length, 0);
  });

  it("applies a removal that is still there on the second read", async () => {
    const removed = config({ "a.test": { users: ["u1"] } });
    let loads = 0;
    const load = confirmRemovals(
      () => {
        loads++;
        return Promise.resolve(removed);
      },
      () => current,
      5,
    );
    assert.equal(await load(), removed);
    assert.equal(loads, 2);
  });
});
