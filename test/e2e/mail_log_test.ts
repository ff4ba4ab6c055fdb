/**
 * The mail log in a file: one line per event, greppable by queue ID, the
 * post-data hook's outcome among them, and the file opened again on SIGHUP
 * so that logrotate can rename it.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { eventually, freePort, posternCommand, ROOT, run, tempDir, writeTree } from "./harness.ts";

describe("mail log file", () => {
  let configDir: string;
  let dataDir: string;
  let port: number;
  let child: ChildProcess;
  let stderr = "";
  const logFile = () => join(configDir, "mail.log");
  const read = (path: string) => readFile(path, "utf8").catch(() => "");
  const send = async (subject: string) => {
    const result = await run("swaks", [
      "--server",
      `127.0.0.1:${port}`,
      "--from",
      "sender@client.test",
      "--to",
      "alice@example.test",
      "--header",
      `Subject: ${subject}`,
    ]);
    assert.equal(result.code, 0, result.stdout);
    return /queued as (\w+)/.exec(result.stdout)![1]!;
  };

  before(async () => {
    configDir = await tempDir("postern-config-");
    dataDir = await tempDir("postern-data-");
    await writeTree(configDir, {
      "postern.yaml": "log:\n  mail_file: mail.log\n",
      "domains/example.test/users": "alice\n",
      "hooks/post-data.ts": 'export default () => ({ action: "accept" });\n',
    });
    port = await freePort();
    const [cmd, ...args] = posternCommand([
      "serve",
      "--config",
      configDir,
      "--data",
      dataDir,
      "--listen",
      `127.0.0.1:${port}`,
      "--admin-listen",
      "off",
    ]);
    child = spawn(cmd!, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    child.stderr!.on("data", (chunk) => stderr += chunk);
    await eventually(
      async () => (await read(logFile())).includes("event=listening") ? true : undefined,
      30_000,
      `the listening line in the mail log file; stderr:\n${stderr}`,
    );
  });
  after(async () => {
    if (child.exitCode === null) {
      process.kill(child.pid!, "SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
    await rm(configDir, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  });

  it("has every event of a message, hook outcome included, under its queue ID", async () => {
    const qid = await send("first");
    const lines = await eventually(
      async () => {
        const mine = (await read(logFile())).split("\n").filter((l) => l.includes(`qid=${qid} `));
        return mine.some((l) => l.includes("event=completed")) ? mine : undefined;
      },
      10_000,
      "the delivery of the first message in the log",
    );
    const events = lines.map((l) => /event=(\w+)/.exec(l)?.[1]);
    assert.deepEqual(events, ["hook", "queued", "delivery", "completed"]);
    assert.match(lines[0]!, /event=hook hook=post-data outcome=accept/);
  });

  it("opens the file again on SIGHUP, after logrotate renamed it", async () => {
    await rename(logFile(), `${logFile()}.1`);
    process.kill(child.pid!, "SIGHUP");
    // Once the server has reopened it, the next message goes to the new file only.
    const qid = await eventually(
      async () => {
        const sent = await send("after rotation");
        return (await read(logFile())).includes(`qid=${sent} `) ? sent : undefined;
      },
      10_000,
      "a line in the new mail.log",
    );
    assert.ok(!(await read(`${logFile()}.1`)).includes(`qid=${qid} `));
    assert.match(await read(`${logFile()}.1`), /event=listening/);
    assert.equal(child.exitCode, null, "SIGHUP does not end the server");
  });
});
