import assert from "node:assert/strict";
import dgram from "node:dgram";
import net from "node:net";
import { describe, it } from "node:test";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { startDnsServer } from "../../support/dns_server.ts";

/** A TCP listener on a free loopback port whose UDP twin is free too. */
async function tcpOnlyPort(): Promise<{ port: number; close: () => Promise<void> }> {
  for (let i = 0; i < 20; i++) {
    const tcp = net.createServer();
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen(0, "127.0.0.1", () => resolve());
    });
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = dgram.createSocket("udp4");
    const udpFree = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, "127.0.0.1", () => resolve(true));
    });
    if (udpFree) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      return { port, close: () => new Promise<void>((resolve) => tcp.close(() => resolve())) };
    }
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }
  throw new Error("no port with a free UDP twin in 20 tries");
}

describe("startDnsServer", () => {
  it("startDnsServer() tries a new port pair when TCP finds the UDP port's number taken", async () => {
    const taken = await tcpOnlyPort();
    const picks: number[] = [];
    try {
      const dns = await startDnsServer({ "a.test": { A: ["192.0.2.1"] } }, {
        pickPort: (attempt) => {
          picks.push(attempt);
          return attempt === 0 ? taken.port : 0;
        },
      });
      try {
        assert.deepEqual(picks, [0, 1]);
        assert.notEqual(dns.port, taken.port);
        // Both halves of the new pair answer: UDP first, then TCP (truncate mode).
        const resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 2000 });
        assert.deepEqual(await resolver.resolve("a.test", "A"), ["192.0.2.1"]);
        dns.mode = "truncate";
        const tcpResolver = new DnsResolver({ servers: [dns.address], timeoutMs: 2000 });
        assert.deepEqual(await tcpResolver.resolve("a.test", "A"), ["192.0.2.1"]);
        assert.deepEqual(dns.queries.map((q) => q.transport), ["udp", "udp", "tcp"]);
      } finally {
        await dns.close();
      }
    } finally {
      await taken.close();
    }
  });

  it("startDnsServer() gives up with the cause after ten taken pairs", async () => {
    const taken = await tcpOnlyPort();
    let attempts = 0;
    try {
      await assert.rejects(
        startDnsServer({}, {
          pickPort: () => {
            attempts++;
            return taken.port;
          },
        }),
        (err: Error) => {
          assert.match(err.message, /in 10 attempts/);
          assert.equal((err.cause as { code?: string }).code, "EADDRINUSE");
          return true;
        },
      );
      assert.equal(attempts, 10);
    } finally {
      await taken.close();
    }
  });
});
