/**
 * Aliases end to end: forwarding, lists, suffixes and drop characters,
 * pipes, a copy kept by a self-referencing alias, and remote forwards.
 */

import assert from "node:assert/strict";
import { chmod, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

describe("aliases", () => {
  let server: Server;
  let pipeOut: string;
  before(async () => {
    const scratch = await tempDir("postern-pipe-");
    pipeOut = join(scratch, "piped.eml");
    const script = join(scratch, "pipe.sh");
    await writeFile(script, `#!/bin/sh\n{ echo "env: $SENDER $RECIPIENT $ALIAS"; cat; } > "$1"\n`);
    await chmod(script, 0o755);
    server = await startServer({
      config: {
        "domains/example.test/users": "jose\nrose\njuan\nroot\n",
        "domains/example.test/aliases": [
          "# test aliases",
          "pepe: jose",
          "flowers: rose, juan",
          "root: root, jose",
          `tubo: | ${script} ${pipeOut}`,
          "fwd: someone@remote.test",
          // More members than the alias-resolve hook may be asked about
          // (1,000), with no hook: the limit on hook calls does not apply.
          `everyone: ${Array.from({ length: 1001 }, (_, i) => `m${i}`).join(", ")}`,
          "",
        ].join("\n"),
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  async function send(to: string, subject: string): Promise<string> {
    const result = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      to,
      "--header",
      `Subject: ${subject}`,
    ]);
    const accepted = replies(result.stdout).find((l) => l.startsWith("250 2.0.0 Ok: queued as "));
    assert.ok(accepted, `${to}: ${result.stdout}`);
    return accepted.split(" ").at(-1)!;
  }

  async function mailbox(user: string, subject: string): Promise<string> {
    return await eventually(
      async () => {
        const found = (await maildirMessages(server.dataDir, "example.test", user)).filter((m) =>
          m.includes(`Subject: ${subject}\n`)
        );
        return found.length === 1 ? found[0] : undefined;
      },
      15_000,
      `${subject} in ${user}'s mailbox`,
    );
  }

  it("forwards an alias to a local user", async () => {
    await send("pepe@example.test", "to-pepe");
    const stored = await mailbox("jose", "to-pepe");
    assert.match(stored, /^Delivered-To: jose@example\.test$/m);
  });

  it("expands a list alias to every member", async () => {
    const qid = await send("flowers@example.test", "to-flowers");
    await mailbox("rose", "to-flowers");
    await mailbox("juan", "to-flowers");
    await server.waitForLog(new RegExp(`qid=${qid} event=completed sent=1 failed=0`));
  });

  it("ignores suffixes and drop characters when looking names up", async () => {
    await send("Pe.Pe+newsletter@example.test", "suffixed");
    await mailbox("jose", "suffixed");
  });

  it("keeps a copy in the mailbox of an alias that names itself", async () => {
    await send("root@example.test", "to-root");
    await mailbox("root", "to-root");
    await mailbox("jose", "to-root");
  });

  it("pipes the message to a command", async () => {
    const qid = await send("tubo@example.test", "to-pipe");
    const output = await eventually(
      () =>
        readFile(pipeOut, "utf8").then(
          (t) => t.includes("to-pipe") ? t : undefined,
          () => undefined,
        ),
    );
    assert.match(output, /^env: sender@client\.test tubo@example\.test tubo@example\.test$/m);
    assert.match(output, /^Subject: to-pipe$/m);
    assert.doesNotMatch(output, /\r/);
    await server.waitForLog(new RegExp(`qid=${qid} event=delivery .*result=sent dest="\\| `));
  });

  it("delivers to every member of a list of 1,001 when no alias-resolve hook is installed", async () => {
    const qid = await send("everyone@example.test", "to-everyone");
    const line = await server.waitForLog(new RegExp(`qid=${qid} event=delivery `), 60_000);
    assert.match(line, /result=sent/);
    const boxes = await readdir(join(server.dataDir, "mail", "example.test"));
    assert.equal(boxes.filter((b) => /^m\d+$/.test(b)).length, 1001);
  });

  it("refuses names that are neither users nor aliases", async () => {
    const result = await swaks(server, ["--to", "nobody@example.test", "--quit-after", "RCPT"]);
    assert.ok(replies(result.stdout).includes("550 5.1.1 No such user here"), result.stdout);
  });
});
