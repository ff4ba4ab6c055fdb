/**
 * What the module hook sandbox tests share: the probe hook, which does
 * what the message body names (`case=NAME mode=catch|throw arg=VALUE`) and
 * reports in headers what the sandbox did (`X-Denied`, `X-Error-Name`,
 * `X-Error`), the other hooks the tests install, and sending probes over
 * SMTP and checking the outcome (a denial, or a 451 after which nothing is
 * kept and the next message is served).
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { eventually, maildirMessages, replies, type Server, swaks } from "./harness.ts";

/**
 * The probe hook. Written with String.raw, so it holds no `${`; the
 * regular expressions keep their backslashes.
 */
export const PROBE_HOOK = String.raw`// Sandbox probes for test/e2e/hooks_sandbox_*test.ts.
import process from "node:process";
import nodeConsole from "node:console";
import { writeSync } from "node:fs";
import v8 from "node:v8";

let calls = 0;
const encoder = new TextEncoder();

function param(body, name) {
  const m = body.match(new RegExp("(?:^|\\s)" + name + "=(\\S*)"));
  return m ? decodeURIComponent(m[1]) : "";
}

function clean(value) {
  return String(value).replace(/[^\x20-\x7e]+/g, " ").trim().slice(0, 300);
}

/** A frame as the worker sends it: length, kind 1 (JSON), call id, JSON. */
function frame(id, value) {
  const payload = encoder.encode(JSON.stringify(value));
  const bytes = new Uint8Array(9 + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 5 + payload.length);
  view.setUint8(4, 1);
  view.setUint32(5, id);
  bytes.set(payload, 9);
  return bytes;
}

/** Forged results that would reject calls 0 to 64 if Postern read them. */
function forgedFrames() {
  const parts = [];
  for (let id = 0; id <= 64; id++) {
    parts.push(frame(id, { t: "result", ok: true, value: { action: "reject", message: "FORGED by hook output" } }));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function writeAll(stream, bytes) {
  let done = 0;
  while (done < bytes.length) done += await stream.write(bytes.subarray(done));
}

const cases = {
  none: () => "nothing",
  passwd: () => Deno.readTextFile("/etc/passwd"),
  read: (arg) => Deno.readTextFile(arg),
  readdir: async (arg) => {
    const names = [];
    for await (const entry of Deno.readDir(arg)) names.push(entry.name);
    return names.join(",") || "(empty)";
  },
  "spool-own": (arg, input) => Deno.readTextFile(arg + "/spool/queue/" + input.queueId + ".msg"),
  write: async (arg) => {
    await Deno.writeTextFile(arg, "written by a hook\n");
    return "written";
  },
  connect: async (arg) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(arg) });
    conn.close();
    return "connected";
  },
  fetch: async (arg) => (await fetch("http://127.0.0.1:" + arg + "/")).text(),
  run: async (arg) => "exit " + (await new Deno.Command(arg).output()).code,
  env: (arg) => Deno.env.get(arg) ?? "(unset)",
  "env-all": () => Object.keys(Deno.env.toObject()).length + " variables",
  dlopen: (arg) => {
    const lib = Deno.dlopen(arg, { getpid: { parameters: [], result: "i32" } });
    const pid = lib.symbols.getpid();
    lib.close();
    return "getpid " + pid;
  },
  sys: () => Deno.hostname(),
  caches: async () => {
    const cache = await caches.open("postern-sandbox-test");
    await cache.put("http://probe.invalid/", new Response(new Uint8Array(1 << 20)));
    await caches.delete("postern-sandbox-test");
    return "stored 1 MiB on disk";
  },
  localstorage: () => {
    localStorage.setItem("postern-sandbox-test", "x".repeat(1024));
    localStorage.removeItem("postern-sandbox-test");
    return "stored 1 KiB on disk";
  },
  "heap-limit": () => String(v8.getHeapStatistics().heap_size_limit),
  oom: () => {
    const keep = [];
    for (let i = 0; i < 5000; i++) keep.push(new Array(100000).fill(i));
    return "survived " + keep.length;
  },
  offheap: () => {
    const keep = [];
    for (let i = 0; i < 32; i++) keep.push(new Uint8Array(16 << 20).fill(1));
    return "allocated " + keep.length * 16 + " MiB";
  },
  hang: () => new Promise(() => {}),
  spin: () => {
    const end = Date.now() + 30000;
    while (Date.now() < end) { /* busy, bounded */ }
    return "spun for 30 s";
  },
  output: async () => {
    const forged = forgedFrames();
    console.log("MARKER-console " + new TextDecoder().decode(forged));
    console.log("MARKER-huge " + "x".repeat(1 << 20));
    for (let i = 0; i < 2000; i++) console.log("MARKER-line " + i);
    await writeAll(Deno.stdout, encoder.encode("MARKER-deno-stdout "));
    await writeAll(Deno.stdout, forged);
    await writeAll(Deno.stdout, new Uint8Array([0xff, 0xfe, 0, 0, 0, 1, 10]));
    await new Promise((resolve) => process.stdout.write("MARKER-process-stdout ", resolve));
    await new Promise((resolve) => process.stdout.write(forged, resolve));
    await new Promise((resolve) => process.stdout.write("\n", resolve));
    console.error("MARKER-stderr");
    return "printed";
  },
  "node-console": () => {
    nodeConsole.log("MARKER-node-console");
    return "printed";
  },
  fd1: () => {
    writeSync(1, "MARKER-fd1\n");
    return "printed";
  },
  "web-worker": () => new Promise((resolve, reject) => {
    const source = "console.log('MARKER-web-worker'); self.postMessage('done');";
    const worker = new Worker("data:text/javascript," + encodeURIComponent(source), { type: "module" });
    const timer = setTimeout(() => {
      worker.terminate();
      reject(new Error("the web worker did not answer"));
    }, 5000);
    worker.onmessage = () => {
      clearTimeout(timer);
      worker.terminate();
      resolve("printed");
    };
    worker.onerror = (event) => {
      event.preventDefault();
      clearTimeout(timer);
      worker.terminate();
      reject(new Error("web worker: " + event.message));
    };
  }),
};

export default async function (input) {
  calls++;
  const text = await new Response(input.message).text();
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  const name = param(body, "case");
  if (!Object.hasOwn(cases, name)) return { action: "defer", message: "unknown probe case " + name };
  const run = cases[name];
  const arg = param(body, "arg");
  const headers = ["X-Case: " + name, "X-Pid: " + Deno.pid, "X-Calls: " + calls];
  if (param(body, "mode") === "throw") {
    headers.push("X-Result: " + clean(await run(arg, input)));
    return { action: "accept", headers };
  }
  try {
    const value = await run(arg, input);
    headers.push("X-Denied: no", "X-Result: " + clean(value));
  } catch (err) {
    headers.push(
      "X-Denied: yes",
      "X-Error-Name: " + clean(err?.name ?? typeof err),
      "X-Error: " + clean(err?.message ?? err),
    );
  }
  return { action: "accept", headers };
}
`;

/** A hook that reads /etc/passwd by static import: it must fail to load. */
export const STATIC_IMPORT_HOOK = `import passwd from "/etc/passwd" with { type: "text" };
export default function () {
  return { action: "accept", headers: ["X-Leaked: " + passwd.split("\\n")[0]] };
}
`;

/** Another hook's files, which the post-data hook must not read. */
export const OTHER_HOOK = `// SECRET-OF-THE-ALIAS-EXISTS-HOOK
export default () => false;
`;

/** The reply to a message whose post-data hook failed, whatever the cause. */
export const FAILED = "451 4.3.0 Message could not be checked, try again later";

/** What one SMTP transaction ended with. */
export interface Sent {
  /** The reply to the end of DATA ("" when swaks did not get that far). */
  reply: string;
  /** The queue ID, when the message was accepted. */
  qid: string | undefined;
  /** A unique string in the message body. */
  token: string;
  elapsedMs: number;
  stdout: string;
}

let sequence = 0;

/** Sends one message whose body is `fields` as `name=value` pairs. */
export async function send(server: Server, fields: Record<string, string>): Promise<Sent> {
  const token = `token-${process.pid}-${++sequence}-${Date.now()}`;
  const body = Object.entries({ ...fields, token })
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join(" ");
  const started = Date.now();
  const result = await swaks(server, [
    "--from",
    "carol@client.test",
    "--to",
    "alice@example.test",
    "--body",
    body,
  ]);
  const elapsedMs = Date.now() - started;
  const lines = replies(result.stdout);
  const at = lines.findIndex((l) => l.startsWith("354"));
  const reply = at >= 0 ? lines[at + 1] ?? "" : "";
  const qid = reply.match(/^250 2\.0\.0 Ok: queued as (\w+)$/)?.[1];
  return { reply, qid, token, elapsedMs, stdout: result.stdout };
}

/** The Maildir copy of an accepted message. */
export async function delivered(server: Server, sent: Sent): Promise<string> {
  assert.ok(
    sent.qid,
    `expected "250 2.0.0 Ok: queued as …", got ${JSON.stringify(sent.reply)}\n` +
      `application log (end):\n${server.stderr().slice(-3000)}`,
  );
  return await eventually(
    async () => {
      const messages = await maildirMessages(server.dataDir, "example.test", "alice");
      return messages.find((m) => m.includes(`id ${sent.qid}`) && m.includes(sent.token));
    },
    15_000,
    `delivery of ${sent.qid}`,
  );
}

/** The value of header `name` in a delivered message (its first occurrence). */
export function header(message: string, name: string): string | undefined {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
}

/** Sends a probe that must be accepted; returns the delivered message. */
export async function accepted(server: Server, fields: Record<string, string>): Promise<string> {
  const sent = await send(server, fields);
  const message = await delivered(server, sent);
  assert.equal(header(message, "X-Case"), fields["case"], "the probe hook answered");
  return message;
}

/** Asserts a catch-mode probe reports a denial by the sandbox. */
export async function assertDenied(
  server: Server,
  fields: Record<string, string>,
  error: RegExp,
  name = "NotCapable",
): Promise<string> {
  const message = await accepted(server, { mode: "catch", ...fields });
  assert.equal(
    header(message, "X-Denied"),
    "yes",
    `case ${fields["case"]} was not denied; it returned ${header(message, "X-Result")}`,
  );
  assert.equal(header(message, "X-Error-Name"), name);
  assert.match(header(message, "X-Error") ?? "", error);
  return message;
}

/** Every file under the spool's queue/ and incoming/, as text. */
export async function spoolFiles(server: Server): Promise<string[]> {
  const texts: string[] = [];
  for (const sub of ["queue", "incoming"]) {
    const dir = join(server.dataDir, "spool", sub);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) texts.push(await readFile(join(dir, name), "utf8").catch(() => ""));
  }
  return texts;
}

/**
 * Asserts `sent` was refused with the generic 451 of a failed hook, that
 * the server then accepts and delivers the next message, and that the
 * refused message is neither in the Maildir nor in the spool.
 */
export async function assertRefusedThenServing(server: Server, sent: Sent): Promise<string> {
  assert.equal(sent.reply, FAILED, `swaks output:\n${sent.stdout}`);
  const next = await send(server, { case: "none", mode: "catch" });
  const message = await delivered(server, next);
  assert.equal(header(message, "X-Result"), "nothing");
  const mailbox = await maildirMessages(server.dataDir, "example.test", "alice");
  assert.ok(!mailbox.some((m) => m.includes(sent.token)), "a refused message was delivered");
  assert.ok(
    !(await spoolFiles(server)).some((t) => t.includes(sent.token)),
    "a refused message stayed in the spool",
  );
  return message;
}

/** Application log lines matching `pattern`. */
export function logLines(server: Server, pattern: RegExp): string[] {
  return server.stderr().split("\n").filter((l) => pattern.test(l));
}

/** Waits until the application log has a line matching `pattern`. */
export async function logged(server: Server, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  try {
    return await eventually(
      () => Promise.resolve(logLines(server, pattern)[0]),
      timeoutMs,
      `a log line matching ${pattern}`,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}; application log (end):\n${server.stderr().slice(-4000)}`,
    );
  }
}

/** Waits until process `pid` is gone (Linux /proc). */
export async function processGone(pid: number): Promise<void> {
  await eventually(
    () => Promise.resolve(existsSync(`/proc/${pid}`) ? undefined : true),
    10_000,
    `process ${pid} to end`,
  );
}

/** Replaces the post-data hook atomically (write elsewhere, rename over). */
export async function replaceHook(server: Server, source: string): Promise<void> {
  const temporary = join(server.configDir, "post-data.ts.new");
  await writeFile(temporary, source);
  await rename(temporary, join(server.configDir, "hooks", "post-data.ts"));
}

/** Replaces the post-data hook and waits until the runner has loaded it. */
export async function reloadHook(server: Server, source: string): Promise<void> {
  const loaded = /msg="hook loaded" hook=post-data /;
  const before = logLines(server, loaded).length;
  await replaceHook(server, source);
  await eventually(
    () => Promise.resolve(logLines(server, loaded).length > before ? true : undefined),
    10_000,
    "the runner to load the new hook",
  );
}
