/**
 * "A password never appears on a command line or in a log": logins on the
 * submission listener, with AUTH PLAIN and AUTH LOGIN, that succeed and that
 * fail, with distinctive passwords; then neither password, nor any base64
 * form a client sent on the wire, is in the server's stdout, its stderr
 * (the application log, at level debug), its mail log file, any other file
 * under its data and config directories (the hooks' log files among them),
 * or its command line.
 *
 * Run twice: with the mail log on stdout, and in `log.mail_file`.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  eventually,
  posternCommand,
  replies,
  ROOT,
  run,
  type RunResult,
  tempDir,
  writeTree,
} from "./harness.ts";

const USER = "alice@example.test";
/** The right password and a wrong one: long, and found nowhere else. */
const RIGHT = "Zq7-Kestrel-Passw0rd-41x";
const WRONG = "Wr9-Osprey-Guessw0rd-77k";

const b64 = (text: string) => Buffer.from(text).toString("base64");

/** Every form of the two passwords that reached the server, or that a log might make of them. */
const SECRETS: Record<string, string> = Object.fromEntries(
  [RIGHT, WRONG].flatMap((pw) => [
    [`password ${pw}`, pw],
    // The distinctive middle alone: a log that cuts or quotes the value.
    [`middle of ${pw}`, pw.slice(4, -4)],
    [`base64 of ${pw} (AUTH LOGIN)`, b64(pw)],
    [`base64 of \\0user\\0${pw} (AUTH PLAIN)`, b64(`\0${USER}\0${pw}`)],
    [`base64 of user\\0${pw}`, b64(`${USER}\0${pw}`)],
    [`base64url of ${pw}`, Buffer.from(pw).toString("base64url")],
    [`hex of ${pw}`, Buffer.from(pw).toString("hex")],
  ]),
);

/** The places where a secret was found. */
function leaks(places: Record<string, string>): string[] {
  const found: string[] = [];
  for (const [place, text] of Object.entries(places)) {
    for (const [what, secret] of Object.entries(SECRETS)) {
      if (text.includes(secret)) found.push(`${what} in ${place}`);
    }
  }
  return found;
}

/** Every regular file under `dir`, with its content. */
async function filesUnder(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[path] = await readFile(path, "latin1").catch(() => "");
  }
  return out;
}

for (const mailLogTo of ["stdout", "file"] as const) {
  describe(`no password in any output (mail log on ${mailLogTo})`, () => {
    let configDir: string;
    let dataDir: string;
    let child: ChildProcess;
    let stdout = "";
    let stderr = "";
    let submission = 0;
    const mailLogFile = () => join(configDir, "mail.log");
    const mailLog = async () =>
      mailLogTo === "stdout" ? stdout : await readFile(mailLogFile(), "utf8").catch(() => "");

    const login = (method: "PLAIN" | "LOGIN", password: string): Promise<RunResult> =>
      run("swaks", [
        "--server",
        `127.0.0.1:${submission}`,
        "--timeout",
        "20",
        "--tls",
        "--auth",
        method,
        "--auth-user",
        USER,
        "--auth-password",
        password,
        "--from",
        USER,
        "--to",
        "bob@example.test",
        "--header",
        `Subject: login with ${method}`,
      ]);

    before(async () => {
      configDir = await tempDir("postern-config-");
      dataDir = await tempDir("postern-data-");
      await writeTree(configDir, {
        "postern.yaml": [
          "hostname: mx.example.test",
          "submission:",
          '  listen: ["127.0.0.1:0"]',
          "log:",
          "  level: debug",
          ...(mailLogTo === "file" ? ["  mail_file: mail.log"] : []),
          "",
        ].join("\n"),
        "domains/example.test/users": "bob\n",
      });
      const [addCmd, ...addArgs] = posternCommand(["user", "add", USER, "--config", configDir]);
      const added = await run(addCmd!, addArgs, `${RIGHT}\n`);
      assert.equal(added.code, 0, added.stderr);

      const [cmd, ...args] = posternCommand([
        "serve",
        "--config",
        configDir,
        "--data",
        dataDir,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
      ]);
      child = spawn(cmd!, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout!.on("data", (chunk: Uint8Array) => stdout += new TextDecoder().decode(chunk));
      child.stderr!.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
      // Port 25's listener first, then submission's.
      const addresses = await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`the server exited; stderr:\n${stderr}`);
          const found = [...(await mailLog()).matchAll(/event=listening addr=\S*:(\d+)/g)];
          return found.length >= 2 ? found.map((m) => Number(m[1])) : undefined;
        },
        30_000,
        `two listening lines; stderr:\n${stderr}`,
      );
      submission = addresses[1]!;
    });
    after(async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        process.kill(child.pid!, "SIGTERM");
        await exited;
      }
    });

    it("logs in with PLAIN and LOGIN, right and wrong, and leaks neither password", async () => {
      for (const method of ["PLAIN", "LOGIN"] as const) {
        const ok = await login(method, RIGHT);
        assert.ok(replies(ok.stdout).some((l) => l.startsWith("235 ")), ok.stdout);
        assert.match(ok.stdout, /queued as \w+/, ok.stdout);
        const refused = await login(method, WRONG);
        assert.ok(replies(refused.stdout).some((l) => l.startsWith("535 ")), refused.stdout);
      }
      // The logins are in the log being searched: two of each outcome, and
      // both messages delivered (the last lines their sessions cause).
      const log = await eventually(
        async () => {
          const text = await mailLog();
          const lines = text.split("\n");
          const logins = (result: string) =>
            lines.filter((l) =>
              /event=login /.test(l) && l.includes(USER) && l.includes(`result=${result}`)
            ).length;
          const completed = lines.filter((l) => /event=completed /.test(l)).length;
          return logins("ok") === 2 && logins("refused") === 2 && completed === 2
            ? text
            : undefined;
        },
        15_000,
        "two logins of each outcome and two deliveries in the mail log",
      );
      // The server's own command line holds no secret either.
      const cmdline = await readFile(`/proc/${child.pid}/cmdline`, "latin1").catch(() => "");
      assert.match(cmdline, /serve/, "the server's command line was read");

      const found = leaks({
        stdout,
        stderr,
        "the mail log": log,
        "the server's command line": cmdline,
        ...await filesUnder(dataDir),
        ...await filesUnder(configDir),
      });
      assert.deepEqual(found, []);
      // And what was searched is not empty: the application log has lines.
      assert.match(stderr, /postern started/);
    });
  });
}
