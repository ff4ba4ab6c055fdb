import assert from "node:assert/strict";
import { scryptSync } from "node:crypto";
import { before, describe, it } from "node:test";
import { type LocalDomain, RecipientResolver } from "../../../src/aliases/mod.ts";
import {
  LocalFailures,
  type LoginAttempt,
  LoginChecker,
  type LoginResult,
} from "../../../src/smtp/login.ts";
import { senderRefusal } from "../../../src/smtp/submission.ts";
import { hashPassword } from "../../../src/users/password.ts";

const HOUR = 3_600_000;
const PASSWORD = "correct horse battery staple";

/**
 * A hash at the lowest cost the verifier accepts (ln=10), for the user whose
 * wrong passwords the lockout tests try many times: each try then costs a
 * few milliseconds instead of a full ln=15 computation.
 */
function cheapHash(password: string): string {
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64").replace(/=+$/, "");
  const salt = new TextEncoder().encode("carol's salt....");
  const key = scryptSync(password, salt, 32, { N: 1024, r: 8, p: 1 });
  return `$scrypt$ln=10,r=8,p=1$${b64(salt)}$${b64(key)}`;
}

function makeResolver(aliceHash: string): RecipientResolver {
  const domain: LocalDomain = {
    name: "example.test",
    anyUser: false,
    users: new Set(["alice", "bob", "carol"]),
    aliases: new Map(),
    passwords: new Map([["alice", aliceHash], ["carol", cheapHash("carol's password")]]),
  };
  return new RecipientResolver(new Map([["example.test", domain]]), {
    suffixSeparators: "+",
    dropCharacters: ".",
  });
}

const attempt = (username: string, password: string, ip = "192.0.2.1"): LoginAttempt => ({
  method: "PLAIN",
  username,
  password,
  ip,
});

/** The reason of a refused login; fails the test on a success. */
function refusalOf(result: LoginResult): { code: number; enhanced: string; reason: string } {
  assert.ok("refusal" in result, `expected a refusal, got ${JSON.stringify(result)}`);
  return { code: result.refusal.code, enhanced: result.refusal.enhanced, reason: result.reason };
}

const BAD = { code: 535, enhanced: "5.7.8", reason: "bad_credentials" };
const LOCKED = { code: 454, enhanced: "4.7.0", reason: "login_rate" };

describe("LoginChecker", () => {
  let resolver: RecipientResolver;
  before(async () => {
    resolver = makeResolver(await hashPassword(PASSWORD));
  });

  /** Fails `times` logins of carol (cheap to check) from `ip`. */
  async function fail(
    checker: LoginChecker,
    ip: string,
    times: number,
    limit: number,
  ): Promise<void> {
    for (let i = 0; i < times; i++) {
      const result = await checker.check(
        attempt("carol@example.test", `guess ${i}`, ip),
        resolver,
        limit,
      );
      assert.deepEqual(refusalOf(result), BAD, `failure ${i + 1} from ${ip}`);
    }
  }

  it("logs in with the right password, giving the user's address", async () => {
    const checker = new LoginChecker();
    const result = await checker.check(attempt("alice@example.test", PASSWORD), resolver, 5);
    assert.deepEqual(result, { user: "alice@example.test" });
  });

  it("takes the login in any case and gives the address in lower case", async () => {
    const checker = new LoginChecker();
    const result = await checker.check(attempt("ALICE@Example.TEST", PASSWORD), resolver, 5);
    assert.deepEqual(result, { user: "alice@example.test" });
  });

  it("refuses a wrong password with 535 5.7.8", async () => {
    const checker = new LoginChecker();
    const result = await checker.check(attempt("alice@example.test", "wrong"), resolver, 5);
    assert.deepEqual(refusalOf(result), BAD);
    assert.ok("refusal" in result);
    assert.match(result.refusal.text, /credentials/i);
  });

  it("refuses unknown users, users without a password and bare names alike", async () => {
    const checker = new LoginChecker();
    for (
      const username of [
        "mallory@example.test", // no such user
        "bob@example.test", // a mailbox without a password
        "alice@elsewhere.test", // not a local domain
        "alice", // no domain
      ]
    ) {
      const result = await checker.check(attempt(username, PASSWORD), resolver, 0);
      assert.deepEqual(refusalOf(result), BAD, username);
    }
  });

  it("after N failures from one address refuses even the right password, with 454 4.7.0", async () => {
    const checker = new LoginChecker();
    await fail(checker, "192.0.2.1", 3, 3);
    for (let i = 0; i < 3; i++) {
      const result = await checker.check(attempt("alice@example.test", PASSWORD), resolver, 3);
      assert.deepEqual(refusalOf(result), LOCKED);
    }
    const wrong = await checker.check(attempt("carol@example.test", "guess"), resolver, 3);
    assert.deepEqual(refusalOf(wrong), LOCKED);
    // The same address written as IPv4-mapped IPv6 is the same client.
    const mapped = await checker.check(
      attempt("alice@example.test", PASSWORD, "::ffff:192.0.2.1"),
      resolver,
      3,
    );
    assert.deepEqual(refusalOf(mapped), LOCKED);
    // Another address still logs in.
    const other = await checker.check(
      attempt("alice@example.test", PASSWORD, "192.0.2.2"),
      resolver,
      3,
    );
    assert.deepEqual(other, { user: "alice@example.test" });
  });

  it("allows fewer than N failures, and counts failures of any user together", async () => {
    const checker = new LoginChecker();
    await fail(checker, "192.0.2.1", 2, 3);
    const unknown = await checker.check(attempt("nobody@example.test", "x"), resolver, 3);
    assert.deepEqual(refusalOf(unknown), BAD);
    const locked = await checker.check(attempt("alice@example.test", PASSWORD), resolver, 3);
    assert.deepEqual(refusalOf(locked), LOCKED);
  });

  it("counts an IPv6 client by its /64", async () => {
    const checker = new LoginChecker();
    await fail(checker, "2001:db8:1:2::1", 1, 2);
    await fail(checker, "2001:DB8:1:2:ffff:eeee:dddd:cccc", 1, 2);
    const sameNet = await checker.check(
      attempt("alice@example.test", PASSWORD, "2001:db8:1:2:0:0:0:99"),
      resolver,
      2,
    );
    assert.deepEqual(refusalOf(sameNet), LOCKED);
    const otherNet = await checker.check(
      attempt("alice@example.test", PASSWORD, "2001:db8:1:3::1"),
      resolver,
      2,
    );
    assert.deepEqual(otherNet, { user: "alice@example.test" });
  });

  it("ends the lockout once the failures are an hour old", async () => {
    let now = 0;
    const checker = new LoginChecker(() => now);
    await fail(checker, "192.0.2.1", 2, 2);
    now = HOUR / 2;
    assert.deepEqual(
      refusalOf(await checker.check(attempt("alice@example.test", PASSWORD), resolver, 2)),
      LOCKED,
    );
    now = HOUR - 1;
    assert.deepEqual(
      refusalOf(await checker.check(attempt("alice@example.test", PASSWORD), resolver, 2)),
      LOCKED,
    );
    now = HOUR + 60_000;
    assert.deepEqual(
      await checker.check(attempt("alice@example.test", PASSWORD), resolver, 2),
      { user: "alice@example.test" },
    );
    // Long after, the address starts again from nothing: N more failures lock it.
    now = 10 * HOUR;
    await fail(checker, "192.0.2.1", 2, 2);
    assert.deepEqual(
      refusalOf(await checker.check(attempt("alice@example.test", PASSWORD), resolver, 2)),
      LOCKED,
    );
  });

  it("never checks more than N passwords in any hour, across the edge of a clock hour", async () => {
    // A guess every 15 s for three hours, the first 10 in the last 150 s of
    // a clock hour. Before, the estimate from two fixed hours let those 10
    // and then 10 more through the next hour (20 checks within one hour of
    // the first); counted exactly, the 11th waits for the 1st to be an hour
    // old.
    let now = HOUR - 150_000;
    const checker = new LoginChecker(() => now);
    const checked: number[] = [];
    for (let i = 0; i < 720; i++, now += 15_000) {
      const result = await checker.check(attempt("carol@example.test", `guess ${i}`), resolver, 10);
      if (refusalOf(result).reason === "bad_credentials") checked.push(now);
    }
    let most = 0;
    for (const start of checked) {
      most = Math.max(most, checked.filter((t) => t >= start && t < start + HOUR).length);
    }
    assert.equal(
      most,
      10,
      `${most} checks within one hour; minutes: ${checked.map((t) => t / 60_000)}`,
    );
    // Exact, not stricter: the 11th check comes as the 1st turns an hour old.
    assert.equal(checked[10], checked[0]! + HOUR);
    assert.equal(checked.length, 30);
  });

  it("does not limit failures when maxFailuresPerHour is 0", async () => {
    const checker = new LoginChecker();
    await fail(checker, "192.0.2.1", 20, 0);
    const result = await checker.check(attempt("alice@example.test", PASSWORD), resolver, 0);
    assert.deepEqual(result, { user: "alice@example.test" });
  });

  it("checks at most N of many wrong passwords sent at the same moment; the rest get 454", async () => {
    // Each attempt counts as a failure from its start: before, all eight
    // read the count before any failure was added, and all got 535.
    const checker = new LoginChecker();
    const results = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => checker.check(attempt("carol@example.test", `guess ${i}`), resolver, 3),
      ),
    );
    const reasons = results.map((r) => refusalOf(r).reason);
    assert.equal(reasons.filter((r) => r === "bad_credentials").length, 3, reasons.join(" "));
    assert.equal(reasons.filter((r) => r === "login_rate").length, 5, reasons.join(" "));
    // The lockout holds afterwards too.
    const locked = await checker.check(
      attempt("carol@example.test", "carol's password"),
      resolver,
      3,
    );
    assert.deepEqual(refusalOf(locked), LOCKED);
  });

  it("counts parallel guesses from one IPv6 /64 together, whatever the addresses", async () => {
    const checker = new LoginChecker();
    const results = await Promise.all(
      Array.from(
        { length: 6 },
        (_, i) =>
          checker.check(
            attempt("carol@example.test", `guess ${i}`, `2001:db8::${i + 1}`),
            resolver,
            2,
          ),
      ),
    );
    const reasons = results.map((r) => refusalOf(r).reason);
    assert.equal(reasons.filter((r) => r === "bad_credentials").length, 2, reasons.join(" "));
  });

  it("gives a successful attempt's place back, and a finished failure keeps its count", async () => {
    const checker = new LoginChecker();
    await fail(checker, "192.0.2.1", 1, 2);
    for (let i = 0; i < 3; i++) {
      const ok = await checker.check(
        attempt("carol@example.test", "carol's password"),
        resolver,
        2,
      );
      assert.deepEqual(ok, { user: "carol@example.test" }, `login ${i + 1}`);
    }
    await fail(checker, "192.0.2.1", 1, 2);
    const locked = await checker.check(
      attempt("carol@example.test", "carol's password"),
      resolver,
      2,
    );
    assert.deepEqual(refusalOf(locked), LOCKED);
  });

  it("keeps the failures of each checker apart", async () => {
    const first = new LoginChecker();
    await fail(first, "192.0.2.1", 1, 1);
    assert.deepEqual(
      refusalOf(await first.check(attempt("carol@example.test", "carol's password"), resolver, 1)),
      LOCKED,
    );
    const second = new LoginChecker();
    const result = await second.check(
      attempt("carol@example.test", "carol's password"),
      resolver,
      1,
    );
    assert.deepEqual(result, { user: "carol@example.test" });
  });
});

describe("LocalFailures", () => {
  it("forgets a client's failures once they leave the window, to the millisecond", () => {
    let now = 1_000;
    const failures = new LocalFailures(() => now, 60_000);
    for (let i = 0; i < 3; i++, now += 10) failures.reserve("192.0.2.1", 3)!.settle(true);
    assert.equal(failures.reserve("192.0.2.1", 3), undefined);
    now = 1_000 + 60_000 - 1;
    assert.equal(failures.failures("192.0.2.1"), 3);
    now = 1_000 + 60_000;
    assert.equal(failures.failures("192.0.2.1"), 2, "the first is a window old");
    assert.ok(failures.reserve("192.0.2.1", 3), "a place again");
  });

  it("stays bounded at 100000 clients under a flood of failures from new addresses", () => {
    let now = 0;
    const failures = new LocalFailures(() => now);
    const busy = "192.0.2.1";
    for (let i = 0; i < 2; i++) failures.reserve(busy, 2)!.settle(true);
    for (let i = 0; i < 100_005; i++) {
      failures.reserve(`k${i}`, 10)!.settle(true);
      // The attacker keeps trying: refused, and kept as recently used.
      if (i % 10_000 === 0) assert.equal(failures.reserve(busy, 2), undefined);
    }
    assert.ok(failures.size <= 100_000, `size ${failures.size}`);
    assert.ok(failures.size >= 99_999, `size ${failures.size}`);
    assert.equal(failures.reserve(busy, 2), undefined, "a client being refused is remembered");
    assert.equal(failures.failures("k0"), 0, "the least recently used were forgotten");
    // A window later the sweep forgets them all.
    now = HOUR + 1;
    failures.reserve("another", 10)!.settle(true);
    assert.equal(failures.size, 1);
  });
});

describe("senderRefusal", () => {
  it("lets a user send as any address of the user's own domain, in any case", () => {
    assert.equal(senderRefusal("alice@example.test", "alice@example.test"), undefined);
    assert.equal(senderRefusal("alice@example.test", "Alice+News@EXAMPLE.Test"), undefined);
    assert.equal(senderRefusal("alice@example.test", "bob@example.test"), undefined);
    assert.equal(senderRefusal("alice@Example.Test", "alice@example.TEST"), undefined);
  });

  it("lets a user of an IDN domain send as its address, with A-labels or U-labels", () => {
    // smtp-server turns MAIL FROM:<hans@xn--bcher-kva.test> into hans@bücher.test.
    assert.equal(senderRefusal("hans@xn--bcher-kva.test", "hans@bücher.test"), undefined);
    assert.equal(senderRefusal("hans@xn--bcher-kva.test", "hans@BÜCHER.test"), undefined);
    assert.equal(senderRefusal("hans@xn--bcher-kva.test", "hans@xn--bcher-kva.test"), undefined);
    assert.equal(senderRefusal("hans@bücher.test", "hans@XN--BCHER-KVA.TEST"), undefined);
    assert.ok(senderRefusal("hans@xn--bcher-kva.test", "hans@bucher.test"));
  });

  for (
    const [label, sender] of [
      ["another domain", "alice@other.test"],
      ["a subdomain", "alice@mail.example.test"],
      ["a domain that ends the same", "alice@badexample.test"],
      ["the null sender", ""],
      ["a sender without @", "alice"],
      ["a sender without @ named like the domain", "example.test"],
    ]
  ) {
    it(`refuses ${label} with 550 5.7.1`, () => {
      const refusal = senderRefusal("alice@example.test", sender!);
      assert.ok(refusal, `expected a refusal for <${sender}>`);
      assert.equal(refusal.code, 550);
      assert.equal(refusal.enhanced, "5.7.1");
      assert.ok(refusal.text.includes(`<${sender}>`));
      assert.ok(refusal.text.includes("example.test"));
    });
  }
});
