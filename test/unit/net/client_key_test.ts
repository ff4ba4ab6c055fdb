import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clientKey } from "../../../src/net/client_key.ts";
import { clientKey as smtpClientKey } from "../../../src/smtp/rate_limits.ts";

// The cases of the key itself are in test/unit/smtp/rate_limits_test.ts,
// from where it was moved.
describe("clientKey (src/net)", () => {
  it("is the one the SMTP limits use", () => {
    assert.equal(smtpClientKey, clientKey);
  });

  it("keys an IPv4 address as itself, an IPv6 one by its /64, a mapped one as IPv4", () => {
    assert.equal(clientKey("192.0.2.1"), "192.0.2.1");
    assert.equal(clientKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    assert.equal(clientKey("2001:db8:1:2:ffff::2"), "2001:db8:1:2::/64");
    assert.equal(clientKey("::ffff:192.0.2.1"), "192.0.2.1");
  });

  it("keys an address the runtime could not tell as one client", () => {
    assert.equal(clientKey(""), "");
  });
});
