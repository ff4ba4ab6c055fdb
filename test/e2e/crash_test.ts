/**
 * Crash safety and graceful shutdown: many concurrent sends, SIGKILL (or
 * SIGTERM) of the server mid-stream, restart. Every message that got a 250
 * is delivered exactly once, and no message appears partially. SIGTERM
 * ends the server by itself, with status 0, refusing new connections.
 */

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import nodemailer from "nodemailer";
import { cleanup, eventually, maildirMessages, type Server, startServer } from "./harness.ts";
import { partialSpoolFiles, queuedFiles } from "../support/spool_files.ts";

const SENDERS = 12;
const MESSAGES_PER_SENDER = 15;
/** The server is killed once this many messages have been acknowledged. */
const KILL_AFTER_ACKS = 40;

function message(token: string): string {
  // About 60 KB, so that a kill is likely to land in the middle of DATA.
  const filler = `${token} `.repeat(60).trimEnd() + "\r\n";
  return `From: crash@client.test\r\nTo: alice@example.test\r\nSubject: ${token}\r\n\r\n` +
    `BEGIN ${token}\r\n${filler.repeat(50)}END ${token}\r\n`;
}

describe("crash safety", () => {
  let server: Server | undefined;
  after(async () => {
    if (server) await cleanup(server);
  });

  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    it(`delivers every acknowledged message exactly once after ${signal}`, async () => {
      const config = { "domains/example.test/users": "alice\n" };
      let current = await startServer({ config });
      server = current;
      const acked = new Set<string>();
      let killed = false;
      let killing: Promise<void> | undefined;

      const sender = async (id: number) => {
        const transport = nodemailer.createTransport({
          host: current.host,
          port: current.port,
          secure: false,
          ignoreTLS: true,
          connectionTimeout: 5_000,
          socketTimeout: 5_000,
        });
        try {
          for (let n = 0; n < MESSAGES_PER_SENDER && !killed; n++) {
            const token = `tok-${id}-${n}`;
            try {
              const info = await transport.sendMail({
                envelope: { from: "crash@client.test", to: ["alice@example.test"] },
                raw: message(token),
              });
              if (/^250 /.test(info.response)) acked.add(token);
            } catch {
              break; // the server is gone
            }
            if (acked.size >= KILL_AFTER_ACKS && !killing) {
              killed = true;
              killing = signal === "SIGKILL" ? current.kill() : current.stop();
            }
          }
        } finally {
          transport.close();
        }
      };
      await Promise.all(Array.from({ length: SENDERS }, (_, i) => sender(i)));
      await killing;
      assert.ok(killed, "the server was killed during the load");
      assert.ok(acked.size >= KILL_AFTER_ACKS, `acknowledged ${acked.size}`);
      if (signal === "SIGTERM") {
        // A clean exit of its own, not a kill.
        assert.equal(current.child.exitCode, 0, current.stderr());
        assert.match(current.stderr(), /msg="shutting down"/);
      }

      // The same directories; a port of its own (port 0, as the harness
      // asks by default): nothing connects to it, and the killed server's
      // port may be anyone's by now.
      current = await startServer({
        configDir: current.configDir,
        dataDir: current.dataDir,
      });
      server = current;

      let missing: string[] = [];
      const delivered = await eventually(
        async () => {
          const messages = await maildirMessages(current.dataDir, "example.test", "alice");
          const tokens = messages.map((m) => /^Subject: (\S+)$/m.exec(m)?.[1] ?? "");
          missing = [...acked].filter((t) => !tokens.includes(t));
          return missing.length === 0 ? messages : undefined;
        },
        30_000,
        "every acknowledged message in the Maildir",
      ).catch(async (err) => {
        const queue = await readdir(join(current.dataDir, "spool", "queue"));
        throw new Error(
          `${err.message}: missing ${missing.join(",")}; spool ${queue.join(",")}; ` +
            `log:\n${current.mailLog.slice(-20).join("\n")}\n${current.stderr()}`,
        );
      });

      const counts = new Map<string, number>();
      for (const text of delivered) {
        const token = /^Subject: (\S+)$/m.exec(text)?.[1];
        assert.ok(token, "every stored message has its subject");
        // Complete: the whole body is there, from BEGIN to END.
        assert.ok(
          text.endsWith(message(token).split("\r\n\r\n")[1]!.replaceAll("\r\n", "\n")),
          `${token} is complete`,
        );
        counts.set(token, (counts.get(token) ?? 0) + 1);
      }
      for (const [token, count] of counts) {
        assert.equal(count, 1, `${token} delivered ${count} times`);
      }
      for (const token of acked) assert.equal(counts.get(token), 1, `${token} was acknowledged`);

      // Nothing half-received is left behind or delivered: the restart
      // removed the unsealed files (never acknowledged) and moved nothing
      // aside (a killed process keeps its page cache: no file is torn).
      assert.deepEqual(await readdir(join(current.dataDir, "spool", "corrupt")), []);
      assert.deepEqual(current.mailLog.filter((l) => l.includes("event=quarantined")), []);
      for (const line of current.mailLog.filter((l) => l.includes("event=unfinished"))) {
        assert.match(line, /qid=\w+ event=unfinished action=removed reason="never acknowledged"/);
      }
      assert.deepEqual(await partialSpoolFiles(current.dataDir), []);
      await eventually(async () =>
        (await queuedFiles(current.dataDir)).length === 0 ? true : undefined
      );
      await cleanup(current);
      server = undefined;
    });
  }
});
