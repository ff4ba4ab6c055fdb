/**
 * The DNS server of the relay bench row: `relay.test` has one MX host,
 * `sink.relay.test`, at 127.0.0.1 (where smtp-sink listens on the port
 * Postern's `outbound.port` names). No MTA-STS record: that lookup gets
 * NXDOMAIN, as it would for most domains. Writes its `host:port` to the file
 * named by the first argument, then serves until it is ended.
 *
 * Usage: deno run -A scripts/bench/relay_dns.ts ADDRESS_FILE
 *
 * @module
 */

import { writeFile } from "node:fs/promises";
import process from "node:process";
import { startDnsServer } from "../../test/support/dns_server.ts";

const out = process.argv[2];
if (!out) throw new Error("usage: relay_dns.ts ADDRESS_FILE");
const dns = await startDnsServer({
  "relay.test": { MX: [{ priority: 10, exchange: "sink.relay.test" }] },
  "sink.relay.test": { A: ["127.0.0.1"] },
}, { negativeTtl: 300 });
await writeFile(out, dns.address);
process.on("SIGTERM", () => {
  dns.close().then(() => process.exit(0));
});
await new Promise(() => {});
