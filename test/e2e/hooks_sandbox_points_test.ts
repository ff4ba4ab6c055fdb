/**
 * "The hook is sandboxed like the others", at the three hook points other
 * than post-data (whose sandbox hooks_sandbox_test.ts tries in depth):
 * alias-exists, alias-resolve and pre-delivery-attempt, each with no
 * grants, try to read a file outside their grants, to connect to a port
 * the test listens on, and to read an environment variable the server has;
 * a control reads the hook's own folder, which is granted.
 *
 * Each hook runs the same probe and answers with its verdict through its
 * own hook point, so the test reads the outcome as the server acts on it:
 * - alias-exists: the probe's address exists (RCPT 250) only when the
 *   sandbox denied the access with NotCapable (or the control read its file);
 * - alias-resolve: the message goes to `ok-<case>` then, else to `leak-<case>`;
 * - pre-delivery-attempt: `dump` with "SANDBOX-OK …" then, else with
 *   "SANDBOX-LEAK …", in the recipient's failed delivery line.
 * A hook that fails at all gets a refusal or a deferral, never the "ok"
 * outcome. Each probe also prints its verdict (the application log, or the
 * pre-delivery-attempt hook's own log), for the failure messages.
 */

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server as NetServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { LineClient } from "../support/smtp_lines.ts";
import {
  cleanup,
  eventually,
  maildirMessages,
  queuedId,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

const CASES = ["read", "net", "env", "own"] as const;
const ENV_NAME = "POSTERN_SANDBOX_CANARY";
const ENV_VALUE = "canary-value-5d1e";
const OUTSIDE_TEXT = "OUTSIDE-THE-GRANTS-7c2a";
const OWN_TEXT = "IN-THE-HOOK-FOLDER-3f9b";

/**
 * The probe shared by the three hooks: `verdict(name)` runs one case and
 * returns `{ ok, detail }`. `ok` is true only when the access was denied
 * with deno's permission error (or, for "own", the granted read returned
 * the file's text); anything else, a success included, is not ok.
 */
function probeSource(hook: string, outsideFile: string, port: number): string {
  return `
const OWN_TEXT = ${JSON.stringify(OWN_TEXT)};
const cases = {
  read: () => Deno.readTextFile(${JSON.stringify(outsideFile)}),
  net: async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: ${port} });
    conn.close();
    return "connected";
  },
  env: () => String(Deno.env.get(${JSON.stringify(ENV_NAME)})),
  own: () => Deno.readTextFile(new URL("./${hook}/own.txt", import.meta.url)),
};
function denied(err) {
  return err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied;
}
async function verdict(name) {
  let result;
  try {
    const value = await cases[name]();
    result = name === "own"
      ? { ok: value.trim() === OWN_TEXT, detail: "read " + JSON.stringify(value.trim()) }
      : { ok: false, detail: "not denied: " + JSON.stringify(String(value).slice(0, 80)) };
  } catch (err) {
    const detail = (err?.name ?? typeof err) + ": " + String(err?.message ?? err).slice(0, 200);
    result = { ok: name !== "own" && denied(err), detail };
  }
  console.error("SANDBOX-PROBE hook=${hook} case=" + name + " ok=" + result.ok + " " + result.detail);
  return result;
}
/** The case in a local part such as "res-read" or "read". */
function caseOf(address) {
  const local = address.split("@")[0];
  return local.slice(local.lastIndexOf("-") + 1);
}
`;
}

const ALIAS_EXISTS = (outside: string, port: number) =>
  probeSource("alias-exists", outside, port) + `
export default async function ({ address }) {
  if (!address.startsWith("ex-")) return false;
  return (await verdict(caseOf(address))).ok;
}
`;

const ALIAS_RESOLVE = (outside: string, port: number) =>
  probeSource("alias-resolve", outside, port) + `
export default async function ({ address }) {
  if (!address.startsWith("res-")) return undefined;
  const name = caseOf(address);
  return ((await verdict(name)).ok ? "ok-" : "leak-") + name;
}
`;

const PRE_DELIVERY = (outside: string, port: number) =>
  probeSource("pre-delivery-attempt", outside, port) + `
export default async function (input) {
  const name = caseOf(input.recipient);
  const { ok, detail } = await verdict(name);
  return { action: "dump", message: (ok ? "SANDBOX-OK " : "SANDBOX-LEAK ") + name + " " + detail };
}
`;

describe("module hook sandbox at alias-exists, alias-resolve and pre-delivery-attempt", () => {
  let server: Server;
  let listener: NetServer;
  let connections = 0;

  /** The probes' lines in the application log and the pre-delivery-attempt hook's log. */
  const probeLines = async () => {
    const hookLog = await readFile(join(server.dataDir, "log", "pre-delivery-attempt.log"), "utf8")
      .catch(() => "");
    return [...server.stderr().split("\n"), ...hookLog.split("\n")]
      .filter((l) => l.includes("SANDBOX-PROBE")).join("\n");
  };

  before(async () => {
    // A port the hooks are not granted: any connection to it is counted.
    listener = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const address = listener.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const outsideDir = await tempDir("postern-outside-");
    const outside = join(outsideDir, "secret.txt");
    await writeFile(outside, `${OUTSIDE_TEXT}\n`);

    const users = [
      "bob",
      ...CASES.flatMap((c) => [`res-${c}`, `ok-${c}`, `leak-${c}`]),
    ];
    server = await startServer({
      env: { [ENV_NAME]: ENV_VALUE },
      config: {
        "postern.yaml": [
          "hostname: mx.example.test",
          "delivery:",
          "  retry_initial: 1s",
          "  retry_max: 2s",
          "",
        ].join("\n"),
        "domains/example.test/users": users.join("\n") + "\n",
        // Remote targets, so that each case is a remote delivery attempt.
        "domains/example.test/aliases": CASES.map((c) => `pre-${c}: ${c}@remote.test\n`).join(""),
        "hooks/alias-exists.ts": ALIAS_EXISTS(outside, port),
        "hooks/alias-exists/own.txt": `${OWN_TEXT}\n`,
        "hooks/alias-resolve.ts": ALIAS_RESOLVE(outside, port),
        "hooks/alias-resolve/own.txt": `${OWN_TEXT}\n`,
        "hooks/pre-delivery-attempt.ts": PRE_DELIVERY(outside, port),
        "hooks/pre-delivery-attempt/own.txt": `${OWN_TEXT}\n`,
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await new Promise((resolve) => listener?.close(resolve));
  });

  it("alias-exists: the file read, the connection and the variable are denied", async () => {
    const client = await LineClient.open(server.host, server.port);
    try {
      assert.match((await client.waitFor(/^220 /)) ?? "(no greeting)", /^220 /);
      assert.match(await client.command("EHLO client.example.net"), /^250 /);
      assert.match(await client.command("MAIL FROM:<sender@client.test>"), /^250 /);
      const replies: Record<string, string> = {};
      for (const c of CASES) replies[c] = await client.command(`RCPT TO:<ex-${c}@example.test>`);
      const expected = Object.fromEntries(CASES.map((c) => [c, "250"]));
      const got = Object.fromEntries(CASES.map((c) => [c, replies[c]!.slice(0, 3)]));
      assert.deepEqual(got, expected, `${JSON.stringify(replies)}\n${await probeLines()}`);
      assert.match(await client.command("QUIT"), /^221 /);
    } finally {
      client.close();
    }
    assert.equal(connections, 0, "the alias-exists hook reached a port it was not granted");
  });

  it("alias-resolve: the file read, the connection and the variable are denied", async () => {
    const subject = "alias-resolve sandbox";
    const sent = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      CASES.map((c) => `res-${c}@example.test`).join(","),
      "--header",
      `Subject: ${subject}`,
    ]);
    const qid = queuedId(sent);
    // Deferred (a failing hook) would leave the message queued: wait for its end.
    await server.waitForLog(new RegExp(`qid=${qid} event=completed`), 20_000);
    const got: Record<string, string> = {};
    for (const c of CASES) {
      const has = async (user: string) =>
        (await maildirMessages(server.dataDir, "example.test", user)).some((m) =>
          m.includes(`\nSubject: ${subject}\n`)
        );
      got[c] = (await has(`ok-${c}`)) ? "ok" : (await has(`leak-${c}`)) ? "leak" : "nowhere";
    }
    const expected = Object.fromEntries(CASES.map((c) => [c, "ok"]));
    assert.deepEqual(got, expected, await probeLines());
    assert.equal(connections, 0, "the alias-resolve hook reached a port it was not granted");
  });

  it("pre-delivery-attempt: the file read, the connection and the variable are denied", async () => {
    const sent = await swaks(server, [
      "--from",
      "bob@example.test",
      "--to",
      CASES.map((c) => `pre-${c}@example.test`).join(","),
    ]);
    const qid = queuedId(sent);
    const got: Record<string, string> = {};
    for (const c of CASES) {
      // Every outcome of the attempt ends in a line for the recipient (the
      // alias's address; the hook sees the remote target).
      const line = await server.waitForLog(
        new RegExp(`qid=${qid} event=delivery to=<pre-${c}@example\\.test> result=`),
        20_000,
      );
      got[c] = /result=failed error="SANDBOX-OK /.test(line) ? "ok" : line;
    }
    const expected = Object.fromEntries(CASES.map((c) => [c, "ok"]));
    assert.deepEqual(got, expected, await probeLines());
    assert.equal(connections, 0, "the pre-delivery-attempt hook reached a port it was not granted");
  });

  it("no hook printed the file's text or the variable's value", async () => {
    // Hook output travels apart from the answers: wait for every probe's line.
    const lines = await eventually(
      async () => {
        const text = await probeLines();
        const all = ["alias-exists", "alias-resolve", "pre-delivery-attempt"].every((hook) =>
          CASES.every((c) => text.includes(`hook=${hook} case=${c} ok=`))
        );
        return all ? text : undefined;
      },
      10_000,
      "a line from every probe",
    );
    assert.ok(!lines.includes(OUTSIDE_TEXT), lines);
    assert.ok(!lines.includes(ENV_VALUE), lines);
  });
});
