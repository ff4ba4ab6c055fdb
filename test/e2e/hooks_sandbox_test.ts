/**
 * The sandbox of module hooks, end to end over SMTP: a post-data hook that
 * tries to read /etc/passwd (by call and by static import), the spool or
 * another hook's files, to write a file, open a socket, spawn a process,
 * read the environment, load a native library, exhaust memory, never
 * answer, or corrupt its channel with output is denied or contained, with
 * the documented SMTP outcome (451 4.3.0 for any failure of the hook), and
 * nothing is lost: a message answered 250 is in the Maildir, a refused one
 * is nowhere, and the next message is served normally.
 *
 * One probe hook serves most cases: the message body names the case
 * (`case=NAME mode=catch|throw arg=VALUE`). In `catch` mode the hook
 * catches what the sandbox throws and reports it in headers (`X-Denied`,
 * `X-Error-Name`, `X-Error`), so a test proves the denial itself and not
 * just some failure; in `throw` mode the error escapes the hook.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  replies,
  type Server,
  startServer,
  swaks,
} from "./harness.ts";

/**
 * The probe hook. Written with String.raw, so it holds no `${`; the
 * regular expressions keep their backslashes.
 */
const PROBE_HOOK = String.raw`// Sandbox probes for test/e2e/hooks_sandbox_test.ts.
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
const STATIC_IMPORT_HOOK = `import passwd from "/etc/passwd" with { type: "text" };
export default function () {
  return { action: "accept", headers: ["X-Leaked: " + passwd.split("\\n")[0]] };
}
`;

/** Another hook's files, which the post-data hook must not read. */
const OTHER_HOOK = `// SECRET-OF-THE-ALIAS-EXISTS-HOOK
export default () => false;
`;

const FAILED = "451 4.3.0 Message could not be checked, try again later";

/** What one SMTP transaction ended with. */
interface Sent {
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
async function send(server: Server, fields: Record<string, string>): Promise<Sent> {
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
async function delivered(server: Server, sent: Sent): Promise<string> {
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
function header(message: string, name: string): string | undefined {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
}

/** Sends a probe that must be accepted; returns the delivered message. */
async function accepted(server: Server, fields: Record<string, string>): Promise<string> {
  const sent = await send(server, fields);
  const message = await delivered(server, sent);
  assert.equal(header(message, "X-Case"), fields["case"], "the probe hook answered");
  return message;
}

/** Asserts a catch-mode probe reports a denial by the sandbox. */
async function assertDenied(
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
async function spoolFiles(server: Server): Promise<string[]> {
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
async function assertRefusedThenServing(server: Server, sent: Sent): Promise<string> {
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
function logLines(server: Server, pattern: RegExp): string[] {
  return server.stderr().split("\n").filter((l) => pattern.test(l));
}

/** Waits until the application log has a line matching `pattern`. */
async function logged(server: Server, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
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
async function processGone(pid: number): Promise<void> {
  await eventually(
    () => Promise.resolve(existsSync(`/proc/${pid}`) ? undefined : true),
    10_000,
    `process ${pid} to end`,
  );
}

/** Replaces the post-data hook atomically (write elsewhere, rename over). */
async function replaceHook(server: Server, source: string): Promise<void> {
  const temporary = join(server.configDir, "post-data.ts.new");
  await writeFile(temporary, source);
  await rename(temporary, join(server.configDir, "hooks", "post-data.ts"));
}

/** Replaces the post-data hook and waits until the runner has loaded it. */
async function reloadHook(server: Server, source: string): Promise<void> {
  const loaded = /msg="hook loaded" hook=post-data /;
  const before = logLines(server, loaded).length;
  await replaceHook(server, source);
  await eventually(
    () => Promise.resolve(logLines(server, loaded).length > before ? true : undefined),
    10_000,
    "the runner to load the new hook",
  );
}

describe("module hook sandbox (post-data, default grants)", () => {
  let server: Server;
  let granted: HttpServer;
  let grantedPort = 0;
  let grantedRequests = 0;
  let closed: NetServer;
  let closedPort = 0;
  let closedConnections = 0;
  const envValue = `sandbox-env-${process.pid}-${Date.now()}`;

  before(async () => {
    granted = createHttpServer((_req, res) => {
      grantedRequests++;
      res.end("granted-ok");
    });
    closed = createNetServer((socket) => {
      closedConnections++;
      socket.destroy();
    });
    const listen = (s: HttpServer | NetServer) =>
      new Promise<number>((resolve, reject) => {
        s.once("error", reject);
        s.listen(0, "127.0.0.1", () => {
          const address = s.address();
          resolve(typeof address === "object" && address ? address.port : 0);
        });
      });
    grantedPort = await listen(granted);
    closedPort = await listen(closed);
    // The harness starts the server with this process's environment.
    process.env["POSTERN_TEST_VAR"] = envValue;
    server = await startServer({
      config: {
        "postern.yaml": [
          "hooks:",
          "  post_data:",
          "    timeout: 20s",
          "    max_memory: 64MiB",
          // The output tests print 2,000 lines and 1 MiB at once: about the
          // channel, not the output budget (hooks_hostile_runtime_test).
          "    output_lines_per_second: 100000",
          "    output_bytes_per_second: 64MiB",
          "    allow:",
          `      net: ["127.0.0.1:${grantedPort}"]`,
          `      env: ["POSTERN_TEST_VAR"]`,
          "",
        ].join("\n"),
        "domains/example.test/users": "alice\n",
        "hooks/post-data.ts": PROBE_HOOK,
        "hooks/post-data/data.json": JSON.stringify({ secret: "own-folder-ok" }),
        "hooks/alias-exists.ts": OTHER_HOOK,
        "hooks/alias-exists/secret.txt": "SECRET-IN-THE-ALIAS-EXISTS-FOLDER\n",
      },
    });
  });

  after(async () => {
    delete process.env["POSTERN_TEST_VAR"];
    if (server) await cleanup(server);
    await new Promise((resolve) => granted?.close(resolve));
    await new Promise((resolve) => closed?.close(resolve));
  });

  it("accepts a harmless message through the probe hook", async () => {
    const message = await accepted(server, { case: "none", mode: "catch" });
    assert.equal(header(message, "X-Denied"), "no");
    assert.equal(header(message, "X-Result"), "nothing");
    assert.match(header(message, "X-Pid") ?? "", /^\d+$/);
  });

  it("denies reading /etc/passwd by call: 451 4.3.0 when the error escapes, NotCapable when caught", async () => {
    const thrown = await send(server, { case: "passwd", mode: "throw" });
    await assertRefusedThenServing(server, thrown);
    await logged(
      server,
      /level=warn msg="post-data hook failed; the message is refused for now" qid=\w+ cause="hook_error: NotCapable: Requires read access to \\"\/etc\/passwd\\"/,
    );
    // The mail log is written once per turn of the server's event loop:
    // the line may come a moment after the application log's.
    await server.waitForLog(
      new RegExp(
        `event=rejected stage=data reason=post_data_failure .*${FAILED.replace(/\./g, "\\.")}`,
      ),
    );
    const message = await assertDenied(
      server,
      { case: "passwd" },
      /^Requires read access to "\/etc\/passwd"/,
    );
    assert.ok(!message.includes("root:x:0:0"), "the contents of /etc/passwd leaked");
  });

  it("denies reading the spool: the queue folder and the message's own spool file", async () => {
    // A message in the queue, so that there is something to find.
    await accepted(server, { case: "none" });
    const spool = join(server.dataDir, "spool");
    await assertDenied(
      server,
      { case: "readdir", arg: join(spool, "queue") },
      new RegExp(`^Requires read access to "${join(spool, "queue")}"`),
    );
    await assertDenied(
      server,
      { case: "spool-own", arg: server.dataDir },
      new RegExp(`^Requires read access to "${join(spool, "queue")}/\\w+\\.msg"`),
    );
    await assertDenied(
      server,
      { case: "read", arg: join(server.dataDir, "run", "hook_worker.js") },
      /^Requires read access to /,
    );
    const thrown = await send(server, { case: "readdir", mode: "throw", arg: spool });
    await assertRefusedThenServing(server, thrown);
  });

  it("denies reading another hook's files, however the path is written", async () => {
    const paths = [
      "hooks/alias-exists.ts",
      join(server.configDir, "hooks", "alias-exists.ts"),
      "hooks/post-data/../alias-exists.ts",
      "hooks/alias-exists/secret.txt",
      "postern.yaml",
    ];
    for (const path of paths) {
      const message = await assertDenied(
        server,
        { case: "read", arg: path },
        /^Requires read access to /,
      );
      assert.ok(!message.includes("SECRET-"), `${path} leaked`);
    }
  });

  it("allows reading its own folder hooks/post-data/ and its own module", async () => {
    const data = await accepted(server, {
      case: "read",
      mode: "catch",
      arg: "hooks/post-data/data.json",
    });
    assert.equal(header(data, "X-Denied"), "no");
    assert.equal(header(data, "X-Result"), '{"secret":"own-folder-ok"}');
    const own = await accepted(server, { case: "read", mode: "catch", arg: "hooks/post-data.ts" });
    assert.equal(header(own, "X-Denied"), "no");
    assert.match(header(own, "X-Result") ?? "", /^\/\/ Sandbox probes for test\/e2e/);
  });

  it("denies writing a file, in /tmp and in its own folder; no file appears", async () => {
    const outside = join(tmpdir(), `postern-hook-write-${process.pid}-${Date.now()}.txt`);
    const inside = join(server.configDir, "hooks", "post-data", "written.txt");
    try {
      for (const path of [outside, inside]) {
        await assertDenied(
          server,
          { case: "write", arg: path },
          new RegExp(`^Requires write access to "${path.replaceAll(".", "\\.")}"`),
        );
        assert.equal(existsSync(path), false, `${path} was written`);
      }
      const thrown = await send(server, { case: "write", mode: "throw", arg: outside });
      await assertRefusedThenServing(server, thrown);
      assert.equal(existsSync(outside), false, `${outside} was written`);
    } finally {
      await rm(outside, { force: true });
    }
  });

  // Deno keeps Cache API and localStorage data in files under DENO_DIR
  // (location_data/), which --allow-write does not govern: a hook must
  // not get a disk to fill, or state that outlives its workers.
  it("cannot write to disk through the Cache API (no --allow-write)", async () => {
    const message = await accepted(server, { case: "caches", mode: "catch" });
    assert.equal(
      header(message, "X-Denied"),
      "yes",
      `the Cache API works without a write grant: ${header(message, "X-Result")}`,
    );
  });

  it("cannot write to disk through localStorage (no --allow-write)", async () => {
    const message = await accepted(server, { case: "localstorage", mode: "catch" });
    assert.equal(
      header(message, "X-Denied"),
      "yes",
      `localStorage works without a write grant: ${header(message, "X-Result")}`,
    );
  });

  it("denies opening a socket to a host that is not granted: nothing connects", async () => {
    const port = String(closedPort);
    await assertDenied(
      server,
      { case: "connect", arg: port },
      new RegExp(`^Requires net access to "127\\.0\\.0\\.1:${port}"`),
    );
    await assertDenied(
      server,
      { case: "fetch", arg: port },
      new RegExp(`^Requires net access to "127\\.0\\.0\\.1:${port}"`),
    );
    const thrown = await send(server, { case: "connect", mode: "throw", arg: port });
    await assertRefusedThenServing(server, thrown);
    assert.equal(closedConnections, 0, "the hook reached a port it was not granted");
  });

  it("allows the granted host: allow.net 127.0.0.1:<port>", async () => {
    const before = grantedRequests;
    const fetched = await accepted(server, {
      case: "fetch",
      mode: "catch",
      arg: String(grantedPort),
    });
    assert.equal(header(fetched, "X-Denied"), "no", header(fetched, "X-Error"));
    assert.equal(header(fetched, "X-Result"), "granted-ok");
    assert.equal(grantedRequests, before + 1);
    const connected = await accepted(server, {
      case: "connect",
      mode: "catch",
      arg: String(grantedPort),
    });
    assert.equal(header(connected, "X-Result"), "connected", header(connected, "X-Error"));
  });

  it("denies spawning a process", async () => {
    await assertDenied(
      server,
      { case: "run", arg: "/bin/true" },
      /^Requires run access to "\/bin\/true"/,
    );
    const thrown = await send(server, { case: "run", mode: "throw", arg: "/bin/true" });
    await assertRefusedThenServing(server, thrown);
  });

  it("denies environment variables that are not granted, and reads the granted one", async () => {
    for (const name of ["HOME", "PATH"]) {
      await assertDenied(
        server,
        { case: "env", arg: name },
        new RegExp(`^Requires env access to "${name}"`),
      );
    }
    await assertDenied(server, { case: "env-all" }, /^Requires env access/);
    const thrown = await send(server, { case: "env", mode: "throw", arg: "HOME" });
    await assertRefusedThenServing(server, thrown);
    const grantedVar = await accepted(server, {
      case: "env",
      mode: "catch",
      arg: "POSTERN_TEST_VAR",
    });
    assert.equal(header(grantedVar, "X-Denied"), "no", header(grantedVar, "X-Error"));
    assert.equal(header(grantedVar, "X-Result"), envValue);
  });

  it("denies loading a native library, and system information", async () => {
    await assertDenied(
      server,
      { case: "dlopen", arg: "libc.so.6" },
      /^Requires ffi access to "libc\.so\.6"/,
    );
    const thrown = await send(server, { case: "dlopen", mode: "throw", arg: "libc.so.6" });
    await assertRefusedThenServing(server, thrown);
    await assertDenied(server, { case: "sys" }, /^Requires sys access to "hostname"/);
  });

  it("keeps hook output out of the channel: console.log garbage, huge output, raw stdout bytes", async () => {
    const first = await accepted(server, { case: "none", mode: "catch" });
    const pid = header(first, "X-Pid");
    const message = await accepted(server, { case: "output", mode: "catch" });
    assert.equal(header(message, "X-Denied"), "no", header(message, "X-Error"));
    assert.equal(header(message, "X-Result"), "printed");
    assert.equal(header(message, "X-Pid"), pid, "the worker was replaced");
    const tagged = (marker: string) =>
      new RegExp(`msg="hook output" hook=post-data pid=${pid} line="?${marker}`);
    for (
      const marker of [
        "MARKER-console ",
        "MARKER-huge x{900}",
        'MARKER-line 0"?$',
        'MARKER-line 1999"?$',
        "MARKER-deno-stdout ",
        "MARKER-process-stdout ",
        "MARKER-stderr",
      ]
    ) {
      await logged(server, tagged(marker));
    }
    assert.equal(logLines(server, tagged('MARKER-line \\d+"?$')).length, 2000);
    assert.deepEqual(
      logLines(server, new RegExp(`msg="hook worker exited" hook=post-data pid=${pid} `)),
      [],
    );
    const next = await accepted(server, { case: "none", mode: "catch" });
    assert.equal(header(next, "X-Pid"), pid);
  });

  // Other ways to reach the process's standard output than the
  // redirected Deno.stdout, process.stdout and console: what a hook
  // prints must go to the log, whichever way it prints.
  for (
    const [name, marker] of [
      ["node-console", "the default export of node:console"],
      ["fd1", "node:fs writeSync(1, …)"],
    ] as const
  ) {
    it(`keeps output through ${marker} out of the channel`, async () => {
      const sent = await send(server, { case: name, mode: "catch" });
      const exited = logLines(server, /msg="hook worker exited" hook=post-data /).at(-1);
      assert.equal(
        sent.reply.slice(0, 4),
        "250 ",
        `expected 250, got ${JSON.stringify(sent.reply)}: output corrupted the channel` +
          (exited ? `\n${exited}` : ""),
      );
      const message = await delivered(server, sent);
      assert.equal(header(message, "X-Result"), "printed", header(message, "X-Error"));
      await logged(
        server,
        new RegExp(`msg="hook output" hook=post-data pid=\\d+ line="?MARKER-${name}`),
      );
    });
  }

  it("caps the V8 heap at max_memory: 64MiB", async () => {
    const message = await accepted(server, { case: "heap-limit", mode: "catch" });
    const limit = Number(header(message, "X-Result"));
    // V8 adds the young generation to the old-space cap; the default
    // (256MiB) would give over 300 MiB and no cap several GiB.
    assert.ok(limit > 0 && limit < 256 * 1024 * 1024, `heap limit ${limit}`);
  });

  it("contains a hook that exhausts its heap: 451, a fresh worker for the next message", async () => {
    const first = await accepted(server, { case: "none", mode: "catch" });
    const pid = Number(header(first, "X-Pid"));
    const sent = await send(server, { case: "oom", mode: "catch" });
    const next = await assertRefusedThenServing(server, sent);
    await logged(
      server,
      new RegExp(
        `level=error msg="hook worker exited" hook=post-data pid=${pid} cause="killed by SIG`,
      ),
    );
    await logged(
      server,
      new RegExp(`msg="hook output" hook=post-data pid=${pid} line=".*out of memory`),
    );
    assert.notEqual(Number(header(next, "X-Pid")), pid, "the next message ran in the dead worker");
    assert.equal(header(next, "X-Calls"), "1", "the fresh worker has fresh state");
    await processGone(pid);
  });

  // Web Workers would each bring a V8 of their own, outside the worker's
  // memory limit: they are taken away, with an error that says so.
  it("takes Web Workers away from hooks with a clear error", async () => {
    await assertDenied(
      server,
      { case: "web-worker" },
      /^Web Workers are not available to hooks/,
      "TypeError",
    );
  });

  // max_memory must bound what a hook can take from the host, not only
  // the V8 heap: ArrayBuffers live outside it.
  it("contains a hook that exhausts memory outside the V8 heap (typed arrays)", async () => {
    const first = await accepted(server, { case: "none", mode: "catch" });
    const pid = Number(header(first, "X-Pid"));
    const sent = await send(server, { case: "offheap", mode: "catch" });
    // 512 MiB held by a hook capped at 64MiB: either an allocation fails in
    // the hook (the data limit) or the worker is ended (the resident check).
    if (sent.qid) {
      const message = await delivered(server, sent);
      assert.equal(
        header(message, "X-Denied"),
        "yes",
        `max_memory 64MiB did not stop the hook: it answered "${header(message, "X-Result")}"`,
      );
      assert.match(header(message, "X-Error") ?? "", /Array buffer allocation failed/);
      return;
    }
    const next = await assertRefusedThenServing(server, sent);
    assert.notEqual(Number(header(next, "X-Pid")), pid);
  });

  it("fails every message when a static import reads /etc/passwd, logs the cause at most once a second, and recovers", async () => {
    const loadError =
      /level=error msg="hook cannot be loaded; its calls fail until it is fixed" hook=post-data file=\S+\/hooks\/post-data\.ts error="[^"]*Requires read access to \\"\/etc\/passwd\\"/;
    const before = logLines(server, loadError).length;
    await reloadHook(server, STATIC_IMPORT_HOOK);
    try {
      const started = Date.now();
      const sent: Sent[] = [];
      for (let i = 0; i < 6; i++) sent.push(await send(server, { case: "none", mode: "catch" }));
      // Keep sending until more than a second has passed since the first.
      for (let i = 0; i < 20 && Date.now() - started < 1_500; i++) {
        sent.push(await send(server, { case: "none", mode: "catch" }));
      }
      const elapsed = Date.now() - started;
      assert.deepEqual(sent.map((s) => s.reply), sent.map(() => FAILED));
      await logged(server, loadError);
      const lines = logLines(server, loadError).slice(before);
      const times = lines.map((l) => Date.parse(l.match(/^ts=(\S+)/)?.[1] ?? ""));
      for (let i = 1; i < times.length; i++) {
        assert.ok(
          times[i]! - times[i - 1]! >= 950,
          `logged twice within a second:\n${lines.join("\n")}`,
        );
      }
      assert.ok(
        lines.length <= Math.ceil(elapsed / 1000) + 1,
        `${lines.length} log lines in ${elapsed} ms`,
      );
      await logged(
        server,
        /msg="post-data hook failed; the message is refused for now" qid=\w+ cause="load_error: TypeError: Requires read access to \\"\/etc\/passwd\\"/,
      );
      const mailbox = await maildirMessages(server.dataDir, "example.test", "alice");
      assert.ok(!mailbox.some((m) => m.includes("X-Leaked")), "the hook ran");
      assert.ok(!mailbox.some((m) => sent.some((s) => m.includes(s.token))));
    } finally {
      await reloadHook(server, PROBE_HOOK);
    }
    const message = await accepted(server, { case: "none", mode: "catch" });
    assert.equal(header(message, "X-Calls"), "1");
  });
});

describe("module hook sandbox (post-data, timeout 2s)", () => {
  let server: Server;

  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 2s\n",
        "domains/example.test/users": "alice\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });

  after(async () => {
    if (server) await cleanup(server);
  });

  for (
    const [name, what] of [
      ["hang", "never settles its promise"],
      ["spin", "blocks its event loop"],
    ] as const
  ) {
    it(`answers 451 after the 2 s timeout when the hook ${what}; the worker is killed and replaced`, async () => {
      const first = await accepted(server, { case: "none", mode: "catch" });
      const pid = Number(header(first, "X-Pid"));
      const sent = await send(server, { case: name, mode: "catch" });
      // Not before the timeout. That the timeout (and not the hook) ended
      // the call is shown by the 451 and the "timed out" line below, since
      // the hook never answers (hang) or answers "accept" after 30 s (spin).
      assert.ok(sent.elapsedMs >= 1_900, `answered after ${sent.elapsedMs} ms`);
      const next = await assertRefusedThenServing(server, sent);
      await logged(
        server,
        new RegExp(
          `level=warn msg="hook timed out; its worker is retired" hook=post-data pid=${pid} timeout_ms=2000`,
        ),
      );
      assert.notEqual(Number(header(next, "X-Pid")), pid);
      assert.equal(header(next, "X-Calls"), "1");
      await processGone(pid);
    });
  }
});
