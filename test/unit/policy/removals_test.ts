/**
 * Removals get a second look: lostRecipients() names what a new policy
 * drops, and confirmRemovals() reads again after the grace period before
 * letting a removal through, while additions pass at once.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Config, DomainConfig } from "../../../src/config/mod.ts";
import {
  confirmRemovals,
  keepRecipients,
  lostRecipients,
  refuseUnfinishedSaves,
  unfinishedSave,
} from "../../../src/policy/mod.ts";

function config(
  domains: Record<string, { users?: string[]; aliases?: string[]; any?: boolean }>,
  removalDelayMs = 300,
) {
  const map = new Map<string, DomainConfig>();
  for (const [name, d] of Object.entries(domains)) {
    map.set(name, {
      name,
      anyUser: d.any ?? false,
      users: new Set(d.users ?? []),
      aliases: new Map((d.aliases ?? []).map((a) => [a, []])),
      passwords: new Map(),
      dkimKeys: [],
      dkimSelector: undefined,
    });
  }
  return { domains: map, reload: { removalDelayMs } } as unknown as Config;
}

describe("lostRecipients", () => {
  const base = config({ "a.test": { users: ["u1", "u2"], aliases: ["sales"] } });

  it("is empty for the same recipients or more", () => {
    assert.deepEqual(lostRecipients(base, base), []);
    const more = config({
      "a.test": { users: ["u1", "u2", "u3"], aliases: ["sales", "info"] },
      "b.test": { users: ["x"] },
    });
    assert.deepEqual(lostRecipients(base, more), []);
  });

  it("names every lost domain, user, alias and catch-all", () => {
    assert.deepEqual(lostRecipients(base, config({})), ["domain a.test"]);
    assert.deepEqual(
      lostRecipients(base, config({ "a.test": { users: ["u1"] } })),
      ["alias sales@a.test", "user u2@a.test"],
    );
    assert.deepEqual(
      lostRecipients(config({ "c.test": { any: true } }), config({ "c.test": {} })),
      ["any_user of c.test"],
    );
  });
});

describe("keepRecipients", () => {
  it("adds what the new policy brings and keeps what it drops", () => {
    const kept = keepRecipients(
      config({ "a.test": { users: ["u1", "u2"], aliases: ["sales"] }, "gone.test": {} }),
      config({ "a.test": { users: ["u1", "u3"] }, "new.test": { users: ["n"] } }),
    );
    assert.deepEqual([...kept.domains.keys()].sort(), ["a.test", "gone.test", "new.test"]);
    assert.deepEqual([...kept.domains.get("a.test")!.users].sort(), ["u1", "u2", "u3"]);
    assert.deepEqual([...kept.domains.get("a.test")!.aliases.keys()], ["sales"]);
  });
});

describe("confirmRemovals", () => {
  const initial = config({ "a.test": { users: ["u1", "u2"] } });

  /** A store: what the last load returned is the policy in force. */
  function harness(reads: Config[], graceMs?: number, first = initial) {
    let current = first;
    let clock = 0;
    let asked = 0;
    const load = confirmRemovals(() => Promise.resolve(reads.shift()!), {
      current: () => current,
      reloadLater: () => asked++,
      ...(graceMs === undefined ? {} : { graceMs: () => graceMs }),
      now: () => clock,
    });
    return {
      reload: async () => (current = await load()),
      advance: (ms: number) => (clock += ms),
      asked: () => asked,
    };
  }
  const users = (c: Config) => [...c.domains.get("a.test")!.users].sort();

  it("applies an addition at once, with nothing to confirm", async () => {
    const h = harness([config({ "a.test": { users: ["u1", "u2", "u3"] } })], 20);
    assert.deepEqual(users(await h.reload()), ["u1", "u2", "u3"]);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(h.asked(), 0);
  });

  it("keeps a dropped user (a file still being written), and forgets it once the file is whole", async () => {
    const h = harness([
      config({ "a.test": {} }), // truncated
      config({ "a.test": { users: ["u1", "u2", "u4"] } }), // written
    ], 20);
    assert.deepEqual(users(await h.reload()), ["u1", "u2"]);
    h.advance(20);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(h.asked(), 1, "one reload was asked for after the grace period");
    assert.deepEqual(users(await h.reload()), ["u1", "u2", "u4"]);
  });

  it("applies an addition at once and the removal of the same edit after the grace period", async () => {
    const edited = () => config({ "a.test": { users: ["u1", "u3"] } });
    const h = harness([edited(), edited(), edited()], 20);
    assert.deepEqual(users(await h.reload()), ["u1", "u2", "u3"], "u3 at once, u2 kept");
    h.advance(10);
    assert.deepEqual(users(await h.reload()), ["u1", "u2", "u3"], "too early to drop u2");
    h.advance(10);
    assert.deepEqual(users(await h.reload()), ["u1", "u3"], "u2 still gone after 20 ms: dropped");
  });

  it("waits reload.removal_delay of the policy in force, by default", async () => {
    const edited = () => config({ "a.test": { users: ["u1"] } }, 5_000);
    const h = harness(
      [edited(), edited(), edited()],
      undefined,
      config(
        { "a.test": { users: ["u1", "u2"] } },
        5_000,
      ),
    );
    assert.deepEqual(users(await h.reload()), ["u1", "u2"]);
    h.advance(4_999);
    assert.deepEqual(users(await h.reload()), ["u1", "u2"], "dropped before 5 s");
    h.advance(1);
    assert.deepEqual(users(await h.reload()), ["u1"]);
  });

  it("takes a shorter reload.removal_delay at once for a removal already waiting", async () => {
    // A minute's delay, and u2 is dropped: the second look is a minute away.
    const slow = config({ "a.test": { users: ["u1", "u2"] } }, 60_000);
    const dropped = (delayMs: number) => config({ "a.test": { users: ["u1"] } }, delayMs);
    const h = harness([dropped(60_000), dropped(20)], undefined, slow);
    assert.deepEqual(users(await h.reload()), ["u1", "u2"]);
    // The admin shortens the delay to 20 ms; u2 is still kept for now.
    h.advance(10);
    assert.deepEqual(users(await h.reload()), ["u1", "u2"]);
    // 20 ms after the removal was first seen, the second look is asked for.
    h.advance(10);
    for (let i = 0; i < 200 && h.asked() === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(h.asked(), 1, "the removal waited out the old delay");
  });

  it("asks for one reload while edits keep changing what is dropped", async () => {
    const reads = [1, 2, 3, 4, 5].map((i) => config({ "a.test": { users: [`v${i}`] } }));
    const h = harness(reads, 30);
    for (let i = 0; i < 4; i++) {
      await h.reload();
      h.advance(10);
    }
    assert.deepEqual(users(await h.reload()).length, 7, "u1, u2 and v1..v5 all kept meanwhile");
    h.advance(30);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(h.asked(), 1);
  });
});

describe("unfinishedSave", () => {
  const MAIN = "/etc/postern/postern.yaml";
  /** A policy read from `postern.yaml` with settings, from an empty one, or without one. */
  const read = (main: "settings" | "empty" | "none") =>
    ({
      mainFile: main === "none" ? undefined : MAIN,
      mainFileEmpty: main === "empty",
    }) as unknown as Config;

  it("refuses a main file emptied or gone where the policy in force had settings", () => {
    assert.match(
      unfinishedSave(read("settings"), read("empty"))!,
      /the file is empty, most likely a save in progress/,
    );
    assert.match(unfinishedSave(read("settings"), read("none"))!, /the file is gone/);
  });

  it("lets the next save with settings through, and an empty file where it was empty already", () => {
    assert.equal(unfinishedSave(read("settings"), read("settings")), undefined);
    assert.equal(unfinishedSave(read("empty"), read("empty")), undefined);
    assert.equal(unfinishedSave(read("empty"), read("none")), undefined);
    assert.equal(unfinishedSave(read("none"), read("empty")), undefined);
    assert.equal(unfinishedSave(read("none"), read("settings")), undefined);
  });

  it("refuseUnfinishedSaves() throws the reason, so that the store keeps the last good policy", async () => {
    const current = read("settings");
    const reads = [read("empty"), read("settings")];
    const load = refuseUnfinishedSaves(() => Promise.resolve(reads.shift()!), () => current);
    await assert.rejects(load(), new RegExp(`^Error: ${MAIN}: the file is empty`));
    assert.equal((await load()).mainFileEmpty, false);
  });
});
