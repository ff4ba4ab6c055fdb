/**
 * "A hold survives restarts": a message held through the admin API stays
 * held, and gets no attempt, after the server stops (SIGTERM) and starts
 * again on the same data, and again after a crash (SIGKILL); released, it
 * is delivered.
 *
 * "Gets no attempt" is shown against a control rather than a wait: the
 * server makes one attempt at a time (`delivery.concurrency: 1`) and takes
 * them in the order they fell due. The held message was due before the
 * restart; a control message sent after the restart is due later. So once
 * the control is delivered, a held message that had lost its hold would
 * have been attempted (and, its destination now accepting, delivered)
 * before it.
 */

import assert from "node:assert/strict";
import { chmod, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  type Server,
  startServer,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

/** The admin API of a running server: its address and token, from the data directory. */
async function adminOf(server: Server): Promise<{ base: string; token: string }> {
  const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
  const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
  return { base: `http://${state.address}`, token };
}

interface QueueItem {
  id: string;
  state: string;
  next_attempt_at: string | null;
  recipients: Array<{ status: string; attempts: number }>;
}

describe("a held message across restarts", () => {
  let configDir: string;
  let dataDir: string;
  let outDir: string;
  let server: Server;
  let admin: { base: string; token: string };
  let held: QueueItem;
  let heldAttempts = 0;

  const call = async (path: string, method = "GET") => {
    const response = await fetch(`${admin.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${admin.token}` },
    });
    return { status: response.status, body: await response.json() };
  };
  const send = (to: string, subject: string) =>
    swaks(server, ["--from", "sender@client.test", "--to", to, "--header", `Subject: ${subject}`]);
  /** What the pipe alias delivered so far. */
  const delivered = async () =>
    await Promise.all(
      (await readdir(outDir)).filter((n) => n.startsWith("delivered.")).map((n) =>
        readFile(join(outDir, n), "utf8")
      ),
    );
  const start = async () => {
    server = await startServer({ configDir, dataDir });
    admin = await adminOf(server);
  };
  const failFlag = () => join(outDir, "fail");

  before(async () => {
    configDir = await tempDir("postern-config-");
    dataDir = await tempDir("postern-data-");
    outDir = await tempDir("postern-out-");
    const script = join(configDir, "deliver.sh");
    await writeTree(configDir, {
      "postern.yaml": [
        "delivery:",
        "  concurrency: 1",
        "  retry_initial: 1s",
        "  retry_max: 2s",
        "",
      ].join("\n"),
      "domains/example.test/users": "alice\n",
      // "held" is a pipe: a temporary failure (EX_TEMPFAIL) while the flag
      // file exists, else the message is written to a file of its own.
      "domains/example.test/aliases": `held: | ${script}\n`,
      "deliver.sh": [
        "#!/bin/sh",
        `if [ -e '${failFlag()}' ]; then cat > /dev/null; exit 75; fi`,
        `cat > "$(mktemp '${outDir}/delivered.XXXXXX')"`,
        "",
      ].join("\n"),
    });
    await chmod(script, 0o755);
    await writeFile(failFlag(), "");
    await start();
  });
  after(async () => {
    await cleanup(server);
  });

  it("holds a message that failed once, then lets its destination accept", async () => {
    assert.equal((await send("held@example.test", "the held one")).code, 0);
    const tried = await eventually(
      async () => {
        const item = (await call("/queue")).body.items?.[0] as QueueItem | undefined;
        return item && item.recipients[0]!.attempts >= 1 ? item : undefined;
      },
      15_000,
      "a first (failed) attempt",
    );
    // 409 while an attempt runs: try until the message is between attempts.
    await eventually(
      async () => (await call(`/queue/${tried.id}/hold`, "POST")).status === 200 || undefined,
      15_000,
      "the hold to be taken",
    );
    held = (await call(`/queue/${tried.id}`)).body;
    assert.equal(held.state, "held");
    heldAttempts = held.recipients[0]!.attempts;
    // From now on an attempt would deliver: a lost hold shows as a delivery.
    await rm(failFlag());
  });

  for (const how of ["stop", "kill"] as const) {
    it(`is still held and not attempted after a restart (${how})`, async () => {
      await server[how]();
      await start();
      // Loaded from the spool at start-up, before the listeners opened.
      await server.waitForLog(new RegExp(`qid=${held.id} event=recovered`));
      const shown = await call(`/queue/${held.id}`);
      assert.equal(shown.status, 200);
      assert.equal(shown.body.state, "held");
      assert.equal(shown.body.next_attempt_at, null);
      assert.deepEqual(
        (await call("/queue?state=held")).body.items.map((i: QueueItem) => i.id),
        [held.id],
      );

      // The control: sent once the held message's own next attempt time
      // (kept in its state file) has passed, so it falls due after it.
      const state = JSON.parse(
        await readFile(join(dataDir, "spool", "queue", `${held.id}.state`), "utf8"),
      );
      assert.equal(state.held, true);
      const heldDue = Date.parse(state.next_attempt_at);
      assert.ok(Number.isFinite(heldDue), JSON.stringify(state));
      if (Date.now() <= heldDue) {
        await new Promise((r) => setTimeout(r, heldDue - Date.now() + 1));
      }
      const control = await send("alice@example.test", `control after ${how}`);
      const controlId = /queued as (\w+)/.exec(control.stdout)?.[1];
      assert.ok(controlId, control.stdout);
      await server.waitForLog(new RegExp(`qid=${controlId} event=delivery .*result=sent`));

      assert.ok(
        !server.mailLog.some((l) => l.includes(`qid=${held.id} event=delivery`)),
        server.mailLog.join("\n"),
      );
      assert.deepEqual(await delivered(), []);
      const after = (await call(`/queue/${held.id}`)).body as QueueItem;
      assert.equal(after.state, "held");
      assert.equal(after.recipients[0]!.attempts, heldAttempts);
      assert.equal(after.recipients[0]!.status, "pending");
    });
  }

  it("is delivered once released", async () => {
    assert.equal((await call(`/queue/${held.id}/release`, "POST")).status, 200);
    await server.waitForLog(new RegExp(`qid=${held.id} event=delivery .*result=sent`));
    await server.waitForLog(new RegExp(`qid=${held.id} event=completed`));
    const messages = await delivered();
    assert.equal(messages.length, 1);
    assert.match(messages[0]!, /\r?\nSubject: the held one\r?\n/);
    assert.equal((await call(`/queue/${held.id}`)).status, 404);
  });
});
