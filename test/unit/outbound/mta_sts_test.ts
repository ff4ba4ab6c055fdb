import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { DnsError } from "../../../src/dns/mod.ts";
import { type KnownPolicy, MtaStsPolicies } from "../../../src/outbound/mta_sts.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

const START = Date.parse("2026-03-01T00:00:00.000Z");
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

type FetchResult = { policy: KnownPolicy; status: string };

/** A policy as mailauth returns a freshly fetched one, expiring `ttlMs` after `now`. */
function found(
  mode: "enforce" | "testing",
  mx: string[],
  now: number,
  ttlMs = DAY,
  id = "20260301",
): FetchResult {
  const expires = new Date(now + ttlMs).toISOString();
  return { policy: { id, mode, mx, maxAge: ttlMs / 1000, expires }, status: "found" };
}

const NOT_FOUND: FetchResult = { policy: { id: false, mode: "none" }, status: "not_found" };

/** A clock and a scripted fetchPolicy that records what it was asked. */
function harness(cacheFile?: string) {
  const h = {
    now: START,
    calls: [] as Array<{ domain: string; known: KnownPolicy | undefined }>,
    answer: (_domain: string): Promise<FetchResult> => Promise.resolve(NOT_FOUND),
    policies: undefined as unknown as MtaStsPolicies,
  };
  h.policies = new MtaStsPolicies({
    resolver: () => Promise.reject(new Error("no DNS in this test")),
    cacheFile,
    now: () => h.now,
    fetchPolicy: (domain, known) => {
      h.calls.push({ domain, known });
      return h.answer(domain);
    },
  });
  return h;
}

describe("MtaStsPolicies", () => {
  it("in enforce mode allows only MX hosts matching the policy", async () => {
    const h = harness();
    h.answer = () =>
      Promise.resolve(found("enforce", ["mx1.example.test", "*.mail.example.test"], h.now));
    const req = await h.policies.requirementFor("example.test");
    assert.equal(req.mode, "enforce");
    assert.deepEqual(req.mx, ["mx1.example.test", "*.mail.example.test"]);
    for (
      const host of [
        "mx1.example.test",
        "MX1.Example.TEST",
        "mx1.example.test.",
        "a.mail.example.test",
      ]
    ) {
      assert.equal(req.allows(host), true, host);
    }
    // RFC 8461 section 4.1: the wildcard stands for exactly one left-most label.
    for (
      const host of [
        "mail.example.test",
        "a.b.mail.example.test",
        "mx2.example.test",
        "mx1.example.test.evil.test",
        "",
      ]
    ) {
      assert.equal(req.allows(host), false, host);
    }
  });

  it("reports testing mode with the same matching", async () => {
    const h = harness();
    h.answer = () => Promise.resolve(found("testing", ["*.example.test"], h.now));
    const req = await h.policies.requirementFor("example.test");
    assert.equal(req.mode, "testing");
    assert.equal(req.allows("mx.example.test"), true);
    assert.equal(req.allows("mx.other.test"), false);
  });

  it("gives mode none without a policy and asks again only after five minutes", async () => {
    const h = harness();
    const req = await h.policies.requirementFor("example.test");
    assert.equal(req.mode, "none");
    assert.deepEqual(req.mx, []);
    assert.equal(req.allows("anything.test"), true);
    h.now += 4 * MINUTE;
    await h.policies.requirementFor("Example.TEST.");
    assert.equal(h.calls.length, 1, "the same domain, whatever its spelling, is remembered");
    h.now += 2 * MINUTE;
    await h.policies.requirementFor("example.test");
    assert.equal(h.calls.length, 2);
    assert.equal(h.calls[0]?.domain, "example.test");
  });

  it("shares one lookup between concurrent callers", async () => {
    const h = harness();
    let release!: (result: FetchResult) => void;
    h.answer = () => new Promise((resolve) => release = resolve);
    const waiting = [1, 2, 3].map(() => h.policies.requirementFor("example.test"));
    await Promise.resolve();
    release(found("enforce", ["mx.example.test"], h.now));
    const results = await Promise.all(waiting);
    assert.equal(h.calls.length, 1);
    assert.ok(results.every((r) => r === results[0] && r.mode === "enforce"));
  });

  it("asks again with the known policy when it expires or the TXT id changes", async () => {
    const h = harness();
    h.answer = () => Promise.resolve(found("enforce", ["mx.example.test"], h.now, 2 * MINUTE));
    await h.policies.requirementFor("example.test");
    h.now += MINUTE;
    await h.policies.requirementFor("example.test");
    assert.equal(h.calls.length, 1, "still valid");
    h.now += MINUTE + 1;
    h.answer = () => Promise.resolve(found("enforce", ["new.example.test"], h.now, DAY, "2"));
    const renewed = await h.policies.requirementFor("example.test");
    assert.equal(h.calls.length, 2, "expired");
    assert.equal(h.calls[1]?.known?.id, "20260301");
    assert.deepEqual(renewed.mx, ["new.example.test"]);
    // Well before expiry, mailauth is asked again after five minutes: it
    // checks the TXT id and fetches the policy only if the id changed.
    h.now += 5 * MINUTE;
    h.answer = () => Promise.resolve(found("testing", ["*.example.test"], h.now, DAY, "3"));
    const changed = await h.policies.requirementFor("example.test");
    assert.equal(h.calls[2]?.known?.id, "2");
    assert.equal(changed.mode, "testing");
  });

  it("keeps a valid cached policy when a lookup fails, but not an expired one", async () => {
    const h = harness();
    h.answer = () => Promise.resolve(found("enforce", ["mx.example.test"], h.now, 20 * MINUTE));
    await h.policies.requirementFor("example.test");
    h.now += 6 * MINUTE;
    h.answer = () => Promise.reject(new Error("network down"));
    assert.equal((await h.policies.requirementFor("example.test")).mode, "enforce");
    h.now += 6 * MINUTE;
    const error = new Error("policy host unreachable");
    h.answer = () =>
      Promise.resolve({ policy: { id: false, mode: "none", error }, status: "errored" });
    const kept = await h.policies.requirementFor("example.test");
    assert.equal(kept.mode, "enforce");
    assert.equal(kept.allows("mx.example.test"), true);
    assert.equal(h.calls[2]?.known?.error, undefined, "mailauth gets the policy, not the error");
    h.now += 10 * MINUTE;
    assert.equal((await h.policies.requirementFor("example.test")).mode, "none");
  });

  it("gives mode none when a lookup fails with nothing cached", async () => {
    const h = harness();
    h.answer = () => Promise.reject(new Error("network down"));
    assert.equal((await h.policies.requirementFor("a.test")).mode, "none");
    const expires = new Date(h.now + 60 * MINUTE).toISOString();
    h.answer = () =>
      Promise.resolve({
        policy: { id: "1", mode: "none", expires, error: new Error("bad certificate") },
        status: "errored",
      });
    assert.equal((await h.policies.requirementFor("b.test")).mode, "none");
  });

  describe("cache file", () => {
    let dir: string;
    beforeEach(async () => {
      dir = await makeTempDir("postern-mta-sts-");
    });
    afterEach(async () => {
      await removeDir(dir);
    });

    it("keeps real policies across instances", async () => {
      const file = join(dir, "state", "mta-sts.json");
      const first = harness(file);
      assert.equal(await first.policies.load(), undefined, "a missing file is no error");
      first.answer = (domain) =>
        Promise.resolve(
          domain === "none.test" ? NOT_FOUND : found("enforce", [`mx.${domain}`], first.now),
        );
      await first.policies.requirementFor("a.test");
      await first.policies.requirementFor("none.test");
      const saved = JSON.parse(await readFile(file, "utf8"));
      assert.deepEqual(Object.keys(saved.policies), ["a.test"]);

      const second = harness(file);
      second.now = first.now + MINUTE;
      assert.equal(await second.policies.load(), undefined);
      second.answer = () => Promise.reject(new Error("network down"));
      const req = await second.policies.requirementFor("a.test");
      assert.equal(req.mode, "enforce");
      assert.deepEqual(req.mx, ["mx.a.test"]);
      assert.equal(second.calls[0]?.known?.id, "20260301", "the TXT id is checked on first use");

      const late = harness(file);
      late.now = first.now + 2 * DAY;
      await late.policies.load();
      late.answer = () => Promise.reject(new Error("network down"));
      assert.equal((await late.policies.requirementFor("a.test")).mode, "none", "expired");
    });

    it("ignores a corrupt file and says why", async () => {
      const file = join(dir, "mta-sts.json");
      await writeFile(file, "{not json");
      const h = harness(file);
      assert.match(String(await h.policies.load()), /invalid JSON/);
      await writeFile(file, JSON.stringify({ version: 1, policies: { "a.test": { id: 7 } } }));
      assert.match(String(await h.policies.load()), /policies\.a\.test\.id/);
      h.answer = () => Promise.resolve(found("enforce", ["mx.a.test"], h.now));
      assert.equal((await h.policies.requirementFor("a.test")).mode, "enforce");
      const saved = JSON.parse(await readFile(file, "utf8"));
      assert.equal(saved.policies["a.test"].id, "20260301", "replaced by a good file");
    });
  });

  it("with mailauth's getPolicy, gives mode none when there is no _mta-sts record", async () => {
    const asked: string[] = [];
    const policies = new MtaStsPolicies({
      resolver: (name, rrtype) => {
        asked.push(`${rrtype} ${name}`);
        return Promise.reject(new DnsError("ENOTFOUND", name, rrtype));
      },
    });
    const req = await policies.requirementFor("example.test");
    assert.equal(req.mode, "none");
    assert.deepEqual(asked, ["TXT _mta-sts.example.test"]);
  });
});
