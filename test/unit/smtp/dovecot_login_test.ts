/**
 * LoginChecker with Dovecot (auth.dovecot): Dovecot's answer decides,
 * wrong passwords count toward the per-client limit, and a Dovecot that
 * cannot be asked is a 454 that is neither a success nor a counted failure.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type LocalDomain, RecipientResolver } from "../../../src/aliases/mod.ts";
import { type LoginAttempt, LoginChecker } from "../../../src/smtp/login.ts";
import type { DovecotAuth, DovecotLogin } from "../../../src/users/dovecot_auth.ts";

const resolver = (() => {
  const domain: LocalDomain = {
    name: "example.test",
    anyUser: false,
    users: new Set(),
    aliases: new Map(),
    passwords: new Map(),
  };
  return new RecipientResolver(new Map([["example.test", domain]]), {
    suffixSeparators: "+",
    dropCharacters: ".",
  });
})();

const attempt = (username: string, password: string): LoginAttempt => ({
  method: "LOGIN",
  username,
  password,
  ip: "192.0.2.7",
});

/** A DovecotAuth whose login() answers with `answer` (or throws it), recording the calls. */
function fakeDovecot(answer: DovecotLogin | Error) {
  const calls: string[] = [];
  const dovecot = {
    checksPasswords: true,
    login(user: string, password: string) {
      calls.push(`${user}:${password}`);
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
  };
  return { calls, dovecot: dovecot as unknown as DovecotAuth };
}

describe("LoginChecker with Dovecot", () => {
  it("takes Dovecot's ok, with the name Dovecot gives, and never looks at the users files", async () => {
    const { calls, dovecot } = fakeDovecot({ result: "ok", user: "Alice@Example.test" });
    const result = await new LoginChecker().check(
      attempt("alice@example.test", "pw"),
      resolver,
      3,
      dovecot,
    );
    assert.deepEqual(result, { user: "alice@example.test" });
    assert.deepEqual(calls, ["alice@example.test:pw"]);
  });

  it("refuses with 535 5.7.8 and counts the failure toward 454 4.7.0", async () => {
    const { calls, dovecot } = fakeDovecot({ result: "fail" });
    const checker = new LoginChecker();
    for (let i = 0; i < 2; i++) {
      const r = await checker.check(attempt("a@example.test", `x${i}`), resolver, 2, dovecot);
      assert.ok("refusal" in r && r.refusal.code === 535 && r.refusal.enhanced === "5.7.8");
    }
    const limited = await checker.check(attempt("a@example.test", "y"), resolver, 2, dovecot);
    assert.ok("refusal" in limited);
    assert.equal(limited.reason, "login_rate");
    assert.equal(limited.refusal.code, 454);
    assert.equal(calls.length, 2, "Dovecot is not asked once the limit is reached");
  });

  it("answers 454 4.7.0 when Dovecot is unreachable or undecided, uncounted, and reports why", async () => {
    const errors: unknown[] = [];
    for (
      const answer of [
        new Error("cannot connect to unix:/run/dovecot/postern-auth: ENOENT"),
        { result: "temporary", reason: "passdb down" } as const,
      ]
    ) {
      const { dovecot } = fakeDovecot(answer);
      const checker = new LoginChecker();
      for (let i = 0; i < 3; i++) {
        const r = await checker.check(
          attempt("a@example.test", "pw"),
          resolver,
          1,
          dovecot,
          (err) => errors.push(err),
        );
        assert.ok("refusal" in r);
        assert.equal(r.reason, "auth_unavailable", "never login_rate: nothing was counted");
        assert.equal(r.refusal.code, 454);
        assert.equal(r.refusal.enhanced, "4.7.0");
      }
    }
    assert.equal(errors.length, 6);
    assert.match(String(errors[0]), /ENOENT/);
    assert.match(String(errors[3]), /passdb down/);
  });

  it("refuses a name or password with NUL without asking Dovecot", async () => {
    const { calls, dovecot } = fakeDovecot({ result: "ok", user: "a@example.test" });
    const r = await new LoginChecker().check(
      attempt("x\0a@example.test", "pw"),
      resolver,
      0,
      dovecot,
    );
    assert.ok("refusal" in r && r.refusal.code === 535);
    assert.deepEqual(calls, []);
  });
});
