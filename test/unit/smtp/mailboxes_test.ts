/**
 * RCPT checks in the mail store: only domains delivered over LMTP are
 * looked up, and a lookup that fails is 451 4.3.0, never a 5xx.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DomainConfig } from "../../../src/config/mod.ts";
import { dovecotMailboxes, mailboxExists } from "../../../src/smtp/mailboxes.ts";
import type { DovecotAuth } from "../../../src/users/dovecot_auth.ts";

function domain(name: string, lmtp: boolean): DomainConfig {
  return {
    name,
    anyUser: false,
    users: new Set(),
    aliases: new Map(),
    passwords: new Map(),
    dkimKeys: [],
    dkimSelector: undefined,
    lmtp: lmtp ? { kind: "unix", path: "/run/dovecot/postern-lmtp" } : undefined,
  };
}

function fakeDovecot(answer: (user: string) => Promise<"found" | "notfound">) {
  const looked: string[] = [];
  const dovecot = {
    lookup(user: string) {
      looked.push(user);
      return answer(user);
    },
  };
  return { looked, dovecot: dovecot as unknown as DovecotAuth };
}

const domains = new Map([
  ["lmtp.test", domain("lmtp.test", true)],
  ["maildir.test", domain("maildir.test", false)],
]);

describe("dovecotMailboxes()", () => {
  it("asks Dovecot about LMTP domains only", async () => {
    const { looked, dovecot } = fakeDovecot((u) =>
      Promise.resolve(u === "alice@lmtp.test" ? "found" : "notfound")
    );
    const lookup = dovecotMailboxes(dovecot, domains);
    const noop = () => {};
    assert.equal(await mailboxExists(lookup, "alice@lmtp.test", noop), true);
    assert.equal(await mailboxExists(lookup, "bob@lmtp.test", noop), false);
    assert.equal(await mailboxExists(lookup, "alice@maildir.test", noop), false);
    assert.equal(await mailboxExists(lookup, "x@elsewhere.test", noop), false);
    assert.deepEqual(looked, ["alice@lmtp.test", "bob@lmtp.test"]);
  });

  it("answers 451 4.3.0 when the lookup fails, and reports the error", async () => {
    const { dovecot } = fakeDovecot(() => Promise.reject(new Error("lookup failed: denied")));
    const errors: unknown[] = [];
    const result = await mailboxExists(
      dovecotMailboxes(dovecot, domains),
      "alice@lmtp.test",
      (err) => errors.push(err),
    );
    assert.deepEqual(result, {
      reason: "mailbox_check_failed",
      reply: {
        code: 451,
        enhanced: "4.3.0",
        text: "Cannot check the mailbox now, try again later",
      },
    });
    assert.match(String(errors[0]), /denied/);
  });
});
