import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inNetworks, parseNetwork } from "../../../src/auth/mod.ts";

describe("parseNetwork", () => {
  it("parseNetwork() reads IPv4 and IPv6 blocks and single addresses", () => {
    assert.equal(parseNetwork("192.0.2.0/24").prefix, 24);
    assert.equal(parseNetwork("192.0.2.7").prefix, 32);
    assert.equal(parseNetwork("2001:db8::/32").bytes.length, 16);
    assert.equal(parseNetwork("::1").prefix, 128);
  });

  it("parseNetwork() throws SyntaxError for bad addresses and prefixes", () => {
    for (
      const bad of [
        "",
        "192.0.2.0/33",
        "2001:db8::/129",
        "300.1.1.1/8",
        "host/8",
        "1.2.3.4/8/9",
        "1.2.3.4/x",
      ]
    ) {
      assert.throws(() => parseNetwork(bad), SyntaxError, bad);
    }
  });
});

describe("inNetworks", () => {
  const nets = ["127.0.0.0/8", "192.0.2.128/25", "2001:db8:1::/48", "::1/128"].map(parseNetwork);

  it("inNetworks() matches addresses inside the blocks", () => {
    for (const ip of ["127.0.0.1", "127.255.0.9", "192.0.2.200", "2001:db8:1:ffff::5", "::1"]) {
      assert.equal(inNetworks(ip, nets), true, ip);
    }
  });

  it("inNetworks() does not match addresses outside the blocks or of the other family", () => {
    for (const ip of ["128.0.0.1", "192.0.2.127", "2001:db8:2::1", "::2", "not an ip", ""]) {
      assert.equal(inNetworks(ip, nets), false, ip);
    }
  });

  it("inNetworks() unwraps IPv4-mapped IPv6 addresses", () => {
    assert.equal(inNetworks("::ffff:127.0.0.1", nets), true);
    assert.equal(inNetworks("::FFFF:10.0.0.1", nets), false);
  });

  it("inNetworks() handles prefixes that are not byte aligned and /0", () => {
    assert.equal(inNetworks("10.0.0.1", [parseNetwork("10.0.0.0/9")]), true);
    assert.equal(inNetworks("10.128.0.1", [parseNetwork("10.0.0.0/9")]), false);
    assert.equal(inNetworks("203.0.113.9", [parseNetwork("0.0.0.0/0")]), true);
    assert.equal(inNetworks("2001:db8::1", [parseNetwork("::/0")]), true);
  });

  it("inNetworks() reads embedded IPv4 in IPv6 notation", () => {
    assert.equal(inNetworks("64:ff9b::192.0.2.1", [parseNetwork("64:ff9b::/96")]), true);
  });
});
