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

  it("inNetworks() answers for the address asked, whatever was asked before", () => {
    // The last address parsed is kept; each question must still be about its own.
    const v4 = [parseNetwork("192.0.2.0/24")];
    for (let round = 0; round < 3; round++) {
      assert.equal(inNetworks("192.0.2.7", v4), true);
      assert.equal(inNetworks("198.51.100.7", v4), false);
      assert.equal(inNetworks("::ffff:192.0.2.7", v4), true);
      assert.equal(inNetworks("2001:db8:1::1", nets), true);
      assert.equal(inNetworks("2001:db8:2::1", nets), false);
      assert.equal(inNetworks("192.0.2.7", nets), false);
    }
  });

  it("inNetworks() reads embedded IPv4 in IPv6 notation", () => {
    assert.equal(inNetworks("64:ff9b::192.0.2.1", [parseNetwork("64:ff9b::/96")]), true);
  });
});

describe("parseNetwork: exact blocks", () => {
  const bytes = (text: string) => [...parseNetwork(text).bytes];
  const v6 = (...groups: number[]) => groups.flatMap((g) => [g >> 8, g & 0xff]);

  it("parseNetwork() reads every form of IPv6 address into its 16 bytes", () => {
    assert.deepEqual(bytes("::"), v6(0, 0, 0, 0, 0, 0, 0, 0));
    assert.deepEqual(bytes("::1"), v6(0, 0, 0, 0, 0, 0, 0, 1));
    assert.deepEqual(bytes("1::"), v6(1, 0, 0, 0, 0, 0, 0, 0));
    assert.deepEqual(bytes("2001:db8::7:8"), v6(0x2001, 0xdb8, 0, 0, 0, 0, 7, 8));
    assert.deepEqual(bytes("1:2:3:4:5:6:7:8"), v6(1, 2, 3, 4, 5, 6, 7, 8));
    assert.deepEqual(bytes("FE80::ABCD"), v6(0xfe80, 0, 0, 0, 0, 0, 0, 0xabcd));
  });

  it("parseNetwork() reads an embedded IPv4 tail as the last 4 bytes", () => {
    // An IPv4-mapped address is the IPv4 address it maps (see below).
    assert.deepEqual(bytes("::ffff:192.168.100.200"), [192, 168, 100, 200]);
    assert.deepEqual(bytes("64:ff9b::192.0.2.1"), bytes("64:ff9b::c000:201"));
    assert.deepEqual(bytes("1:2:3:4:5:6:10.20.30.40"), v6(1, 2, 3, 4, 5, 6, 0x0a14, 0x1e28));
  });

  it("parseNetwork() reads IPv4 addresses into their 4 bytes, keeping the text", () => {
    assert.deepEqual(bytes("192.168.100.200/16"), [192, 168, 100, 200]);
    const net = parseNetwork(" 10.0.0.0/8 ");
    assert.deepEqual([...net.bytes], [10, 0, 0, 0]);
    assert.equal(net.prefix, 8);
    assert.equal(net.text, " 10.0.0.0/8 ");
  });

  it("parseNetwork() refuses a prefix that is not a plain number, and says why", () => {
    for (const bad of ["1.2.3.4/8x", "1.2.3.4/x8", "1.2.3.4/", "1.2.3.4/-1", "::1/1e2"]) {
      assert.throws(() => parseNetwork(bad), SyntaxError, bad);
    }
    assert.throws(() => parseNetwork("192.0.2.0/33"), {
      name: "SyntaxError",
      message: 'Cannot parse network "192.0.2.0/33": the prefix must be 0 to 32',
    });
    assert.throws(() => parseNetwork("2001:db8::/129"), {
      message: 'Cannot parse network "2001:db8::/129": the prefix must be 0 to 128',
    });
  });

  it("parseNetwork() refuses what is not an address, and names it", () => {
    for (const bad of ["1:2:3:4:5:6:7:zz", "1:2:3:4:5:6:7", "1::2::3", "host"]) {
      assert.throws(() => parseNetwork(bad), SyntaxError, bad);
    }
    assert.throws(() => parseNetwork("host/8"), {
      message: 'Cannot parse network "host/8": expected an address or address/prefix',
    });
  });
});

describe("inNetworks: families and mapped addresses", () => {
  it("inNetworks() never matches an address of the other family, even against /0", () => {
    assert.equal(inNetworks("203.0.113.9", [parseNetwork("::/0")]), false);
    assert.equal(inNetworks("2001:db8::1", [parseNetwork("0.0.0.0/0")]), false);
  });

  it("inNetworks() unwraps only a whole ::ffff: prefix, with octets of any length", () => {
    const nets = [parseNetwork("192.168.0.0/16"), parseNetwork("127.0.0.0/8")];
    assert.equal(inNetworks("::ffff:192.168.100.200", nets), true);
    assert.equal(inNetworks("::ffff:127.10.100.200", nets), true);
    // Not a mapped address: an IPv6 address that merely ends like one.
    assert.equal(inNetworks("1::ffff:127.0.0.1", nets), false);
  });

  it("a block written as IPv4-mapped IPv6 is the IPv4 block it maps, for either form of client", () => {
    // Before, such a block was accepted and never matched anything.
    const nets = [parseNetwork("::ffff:127.0.0.1"), parseNetwork("::ffff:10.0.0.0/104")];
    for (const client of ["127.0.0.1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::FFFF:10.200.1.2"]) {
      assert.equal(inNetworks(client, nets), true, client);
    }
    for (const client of ["127.0.0.2", "11.0.0.1", "::1", "::ffff:b00:1"]) {
      assert.equal(inNetworks(client, nets), false, client);
    }
    assert.equal(inNetworks("::ffff:c000:201", [parseNetwork("192.0.2.0/24")]), true);
  });

  it("inNetworks() compares IPv6 addresses by their bytes, not their text", () => {
    const nets = [parseNetwork("2001:db8:0:0:0:0:0:0/64")];
    assert.equal(inNetworks("2001:DB8::ffff", nets), true);
    assert.equal(inNetworks("2001:db8:0:1::", nets), false);
  });
});
