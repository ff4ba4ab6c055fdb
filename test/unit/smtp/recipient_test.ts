import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type LocalDomain, parseAliases, RecipientResolver } from "../../../src/aliases/mod.ts";
import { checkRecipient } from "../../../src/smtp/mod.ts";

function domain(name: string, users: string[], aliases = "", anyUser = false): LocalDomain {
  return { name, anyUser, users: new Set(users), aliases: parseAliases(aliases, name) };
}

const resolver = new RecipientResolver(
  new Map([
    [
      "ex.test",
      domain(
        "ex.test",
        ["alice", "bob", "x".repeat(100), "=".repeat(85), "=".repeat(86)],
        "sales: alice\n",
      ),
    ],
    ["any.test", domain("any.test", [], "", true)],
    ["catch.test", domain("catch.test", ["carol"], "*: carol\n")],
  ]),
  { suffixSeparators: "+", dropCharacters: "." },
);

const TOO_LONG = {
  reason: "local_part_too_long",
  reply: { code: 501, enhanced: "5.1.3", text: "Bad recipient address: local part too long" },
};

describe("checkRecipient", () => {
  it("checkRecipient() accepts an existing user, alias or postmaster", () => {
    assert.equal(checkRecipient("alice@ex.test", resolver), undefined);
    assert.equal(checkRecipient("ALICE+tag@EX.TEST", resolver), undefined);
    assert.equal(checkRecipient("sales@ex.test", resolver), undefined);
    assert.equal(checkRecipient("postmaster@ex.test", resolver), undefined);
    assert.equal(checkRecipient("anyone@any.test", resolver), undefined);
  });

  it("checkRecipient() denies relaying when the domain is not local", () => {
    const refusal = checkRecipient("alice@remote.test", resolver);
    assert.deepEqual(refusal, {
      reason: "relay_denied",
      reply: { code: 550, enhanced: "5.7.1", text: "Relaying denied" },
    });
  });

  it("checkRecipient() denies % routing in a local address", () => {
    const refusal = checkRecipient("user%remote.test@ex.test", resolver);
    assert.equal(refusal?.reason, "routing_denied");
    assert.equal(refusal?.reply.code, 550);
    assert.equal(refusal?.reply.enhanced, "5.7.1");
    assert.match(refusal!.reply.text, /sender-specified routing/);
  });

  it("checkRecipient() denies ! routing in a local address", () => {
    assert.equal(checkRecipient("remote.test!user@ex.test", resolver)?.reason, "routing_denied");
  });

  it("checkRecipient() denies a quoted local part that holds an address", () => {
    assert.equal(checkRecipient('"user@remote.test"@ex.test', resolver)?.reason, "routing_denied");
    assert.equal(
      checkRecipient('"user\\@remote.test"@ex.test', resolver)?.reason,
      "routing_denied",
    );
  });

  it("checkRecipient() denies routing even in an any_user domain", () => {
    assert.equal(checkRecipient("a%b@any.test", resolver)?.reason, "routing_denied");
  });

  it("checkRecipient() judges a source route by its final address", () => {
    assert.equal(checkRecipient("@ex.test:user@remote.test", resolver)?.reason, "relay_denied");
    assert.equal(
      checkRecipient("@ex.test,@other.test:user@remote.test", resolver)?.reason,
      "relay_denied",
    );
    assert.equal(checkRecipient("@remote.test:alice@ex.test", resolver), undefined);
    assert.equal(checkRecipient("@remote.test:nobody@ex.test", resolver)?.reason, "no_such_user");
  });

  it("checkRecipient() returns 550 5.1.1 when the local user does not exist", () => {
    assert.deepEqual(checkRecipient("nobody@ex.test", resolver), {
      reason: "no_such_user",
      reply: { code: 550, enhanced: "5.1.1", text: "No such user here" },
    });
  });

  it("checkRecipient() returns 501 5.1.3 when the address has bad syntax", () => {
    for (const bad of ["alice", "alice@", "@ex.test", "", "@"]) {
      assert.deepEqual(
        checkRecipient(bad, resolver),
        {
          reason: "bad_address",
          reply: { code: 501, enhanced: "5.1.3", text: "Bad recipient address syntax" },
        },
        JSON.stringify(bad),
      );
    }
  });

  it("checkRecipient() accepts a quoted local part that names a user", () => {
    assert.equal(checkRecipient('"alice"@ex.test', resolver), undefined);
  });

  it("checkRecipient() accepts only recipients that resolve to the mailbox that made them valid", async () => {
    // The envelope keeps the address as given at RCPT TO, and delivery
    // resolves that same string, so an accepted quoted local part must reach
    // the user that checkRecipient found.
    assert.equal(checkRecipient('"alice"@ex.test', resolver), undefined);
    assert.deepEqual(await resolver.resolve('"alice"@ex.test'), [
      { kind: "mailbox", domain: "ex.test", user: "alice" },
    ]);
  });

  it("checkRecipient() accepts the domainless postmaster (RFC 5321 section 4.1.1.3)", () => {
    assert.equal(checkRecipient("postmaster", resolver), undefined);
    assert.equal(checkRecipient("Postmaster", resolver), undefined);
  });

  it("checkRecipient() refuses the domainless postmaster with 550 5.1.1 when no domain is ours", () => {
    const none = new RecipientResolver(new Map(), { suffixSeparators: "+", dropCharacters: "." });
    assert.deepEqual(checkRecipient("postmaster", none), {
      reason: "no_such_user",
      reply: { code: 550, enhanced: "5.1.1", text: "No such user here" },
    });
  });

  it("checkRecipient() refuses a name over 64 octets in an any_user domain (RFC 5321 4.5.3.1.1)", () => {
    // The audit's case: taken, then ENAMETOOLONG at every delivery for days.
    assert.deepEqual(checkRecipient(`${"=".repeat(90)}@any.test`, resolver), TOO_LONG);
    assert.equal(checkRecipient(`${"x".repeat(64)}@any.test`, resolver), undefined);
    assert.deepEqual(checkRecipient(`${"x".repeat(65)}@any.test`, resolver), TOO_LONG);
    // Octets, not characters: é is two.
    assert.equal(checkRecipient(`${"é".repeat(32)}@any.test`, resolver), undefined);
    assert.deepEqual(checkRecipient(`${"é".repeat(33)}@any.test`, resolver), TOO_LONG);
    assert.deepEqual(checkRecipient(`"${"x".repeat(65)}"@ANY.TEST`, resolver), TOO_LONG);
  });

  it("checkRecipient() measures the mailbox's name: the suffix and dropped characters aside", () => {
    assert.equal(checkRecipient(`alice+${"t".repeat(200)}@any.test`, resolver), undefined);
    assert.equal(checkRecipient(`${"a.".repeat(60)}@any.test`, resolver), undefined);
  });

  it("checkRecipient() refuses a name whose mailbox folder name would pass 255 bytes", () => {
    // Listed, so no 64-octet rule; but its folder, percent-encoded, could
    // never be made (as mailboxDirName encodes it, "=" is "%3D").
    assert.equal(checkRecipient(`${"x".repeat(100)}@ex.test`, resolver), undefined);
    assert.equal(checkRecipient(`${"=".repeat(85)}@ex.test`, resolver), undefined, "255 bytes");
    assert.deepEqual(checkRecipient(`${"=".repeat(86)}@ex.test`, resolver), TOO_LONG);
  });

  it("checkRecipient() holds a catch-all domain to 64 octets too: it takes any name", () => {
    assert.equal(checkRecipient(`${"x".repeat(64)}@catch.test`, resolver), undefined);
    assert.deepEqual(checkRecipient(`${"x".repeat(65)}@catch.test`, resolver), TOO_LONG);
  });

  it("checkRecipient() refuses an unknown long name as unknown", () => {
    assert.equal(checkRecipient(`${"y".repeat(300)}@ex.test`, resolver)?.reason, "no_such_user");
  });
});
