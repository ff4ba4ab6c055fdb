/**
 * The DNS server of the SPF bench row: the loopback test server
 * (`test/support/dns_server.ts`) serving an SPF record for smtp-source's
 * sender domain that passes for 127.0.0.1, through a realistic record
 * (an include and an `a` mechanism before the matching `ip4`). Writes its
 * `host:port` to the file named by the first argument, then serves until
 * it is ended.
 *
 * Usage: deno run -A scripts/bench/spf_dns.ts ADDRESS_FILE
 *
 * @module
 */

import { writeFile } from "node:fs/promises";
import process from "node:process";
import { startDnsServer } from "../../test/support/dns_server.ts";

const out = process.argv[2];
if (!out) throw new Error("usage: spf_dns.ts ADDRESS_FILE");
const dns = await startDnsServer({
  "client.test": {
    TXT: ["v=spf1 a include:_spf.client.test -all"],
    A: ["192.0.2.10"],
  },
  "_spf.client.test": { TXT: ["v=spf1 ip4:198.51.100.0/24 ip4:127.0.0.0/8 -all"] },
}, { negativeTtl: 300 });
await writeFile(out, dns.address);
process.on("SIGTERM", () => {
  dns.close().then(() => process.exit(0));
});
await new Promise(() => {});
