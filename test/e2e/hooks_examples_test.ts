/**
 * The example hooks in `hooks/examples/` work as documented when copied
 * into a configuration: the spam check talks to the host it is granted
 * (a stand-in for rspamd's HTTP API on loopback), the alias-resolve hook
 * reads its JSON file, the alias-exists hook accepts role addresses.
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  replies,
  ROOT,
  type Server,
  startServer,
  swaks,
} from "./harness.ts";

/** What the stand-in rspamd received, one entry per request. */
interface Checked {
  ip: string | undefined;
  from: string | undefined;
  body: string;
}

describe("example hooks", () => {
  let server: Server;
  let rspamd: HttpServer;
  const checked: Checked[] = [];
  before(async () => {
    rspamd = createServer(async (req: IncomingMessage, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      checked.push({ ip: req.headers["ip"] as string, from: req.headers["from"] as string, body });
      const action = body.includes("BUY NOW")
        ? "reject"
        : body.includes("maybe")
        ? "add header"
        : "no action";
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          action,
          score: action === "reject" ? 20 : action === "no action" ? 0.5 : 7,
        }),
      );
    });
    await new Promise<void>((r) => rspamd.listen(0, "127.0.0.1", r));
    const port = (rspamd.address() as AddressInfo).port;
    const example = (name: string) => readFile(join(ROOT, "hooks", "examples", name), "utf8");
    server = await startServer({
      config: {
        "postern.yaml": `hooks:\n  post_data:\n    allow:\n      net: ["127.0.0.1:${port}"]\n`,
        "domains/example.test/users": "ann\nbob\n",
        "hooks/post-data.ts": (await example("post-data.ts")).replaceAll("11333", String(port)),
        "hooks/alias-resolve.ts": await example("alias-resolve.ts"),
        "hooks/alias-resolve/aliases.json": JSON.stringify({
          "sales@example.test": ["ann@example.test", "bob@example.test"],
          "abuse@example.test": "ann",
        }),
        "hooks/alias-exists.ts": await example("alias-exists.ts"),
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await new Promise((r) => rspamd.close(r));
  });

  const send = async (to: string, body: string) =>
    replies(
      (await swaks(server, ["--from", "zed@client.test", "--to", to, "--body", body])).stdout,
    );

  it("the spam check streams the message to the granted host and acts on its verdict", async () => {
    const clean = await send("ann@example.test", "hello there");
    assert.match(clean.at(-2)!, /^250 2\.0\.0 Ok: queued as /, server.stderr());
    const spam = await send("ann@example.test", "BUY NOW cheap");
    assert.equal(spam.at(-2), "554 5.7.1 Message looks like spam (score 20.0)");
    const last = checked.at(-1)!;
    assert.equal(last.ip, "127.0.0.1");
    assert.equal(last.from, "zed@client.test");
    assert.match(last.body, /^Received: from /);
    assert.match(last.body, /BUY NOW cheap/);
    const message = await eventually(async () => {
      const all = await maildirMessages(server.dataDir, "example.test", "ann");
      return all.find((m) => m.includes("hello there"));
    });
    assert.match(message, /^X-Spam-Score: 0\.50$/m);
    assert.match(message, /^X-Spam-Flag: NO$/m);
  });

  it("alias-exists admits a role address no file lists; alias-resolve expands it from JSON", async () => {
    const role = await send("abuse@example.test", "abuse report");
    assert.equal(role.at(-2)?.slice(0, 9), "250 2.0.0", role.join("\n"));
    const unknown = await send("nobody@example.test", "x");
    assert.ok(unknown.some((l) => l.startsWith("550 5.1.1")), unknown.join("\n"));
    // sales@ is only in the hook's JSON file: not a role, so RCPT refuses it.
    const list = await send("sales@example.test", "list mail");
    assert.ok(list.some((l) => l.startsWith("550 5.1.1")), list.join("\n"));
    await eventually(async () => {
      const all = await maildirMessages(server.dataDir, "example.test", "ann");
      return all.find((m) => m.includes("abuse report"));
    });
    assert.deepEqual(await maildirMessages(server.dataDir, "example.test", "abuse"), []);
  });

  it("the spam check defers when the spam checker is unreachable", async () => {
    await new Promise((r) => rspamd.close(r));
    rspamd.closeAllConnections?.();
    const r = await send("ann@example.test", "while rspamd is down");
    assert.equal(r.at(-2), "451 4.3.0 Spam check unavailable, try again later");
  });
});
