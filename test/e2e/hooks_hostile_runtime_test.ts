/**
 * A hostile module hook against the hook runtime's containment, end to end
 * over SMTP (issue 15, escapes 2 to 5):
 * - the answer channel: a hook that reaches descriptor 3 and writes 16 MiB
 *   frames, or small frames no call asked for, has its worker ended at once
 *   and logged, and a session of RCPT commands is served meanwhile;
 * - output floods: a hook printing a lot during a call gets its first lines
 *   logged, one line saying the rest is dropped, and a session of RCPT
 *   commands is served meanwhile; one that floods between calls is ended,
 *   logged once;
 * - descriptors: Postern started holding extra files, pipes and sockets
 *   (at 5, 6, 9, 47, 48, 200) gives a module hook and an executable hook
 *   none of them;
 * - memory: however a hook allocates (ArrayBuffers, WebAssembly memory,
 *   Web Workers, node:worker_threads) its worker's peak resident memory
 *   stays within max_memory + 128 MiB, and a hook under the limit works.
 *
 * One probe hook serves every case: the message body names it (`case=NAME`).
 */

import assert from "node:assert/strict";
import { readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  rawSession,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";

/** The probe hook (String.raw: no `${` inside, backslashes kept). */
const PROBE_HOOK = String.raw`// Hostile probes for test/e2e/hooks_hostile_runtime_test.ts.
import process from "node:process";
import * as fs from "node:fs";
import { Socket } from "node:net";

const MiB = 1024 * 1024;
const encoder = new TextEncoder();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function param(body, name) {
  const m = body.match(new RegExp("(?:^|\\s)" + name + "=(\\S*)"));
  return m ? decodeURIComponent(m[1]) : "";
}

function clean(value) {
  return String(value).replace(/[^\x20-\x7e]+/g, " ").trim().slice(0, 300);
}

/** The bootstrap's socket on descriptor 3, as a hostile hook finds it. */
function channel() {
  return process._getActiveHandles().find((h) => h._handle?.fd === 3);
}

function frame(announced, id, payload) {
  const bytes = new Uint8Array(9 + payload.byteLength);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, announced);
  view.setUint8(4, 1);
  view.setUint32(5, id);
  bytes.set(payload, 9);
  return bytes;
}

/** Writes frames for a call nobody made, for at most 20 s. */
async function floodChannel(size) {
  const out = channel();
  // {"t":"result","ok":true,"value":"xxx…"}, built without a 16 MiB string.
  const head = encoder.encode('{"t":"result","ok":true,"value":"');
  const json = new Uint8Array(head.byteLength + size + 2).fill(0x78);
  json.set(head);
  json.set(encoder.encode('"}'), head.byteLength + size);
  const bytes = frame(5 + json.byteLength, 424242, json);
  const end = Date.now() + 20000;
  for (let i = 0; i < 100000 && Date.now() < end; i++) {
    await new Promise((resolve) => out.write(bytes, resolve));
  }
}

/** Prints in bursts until the file named release exists (the test grants reading it). */
async function floodOutput(release) {
  if (!release) throw new Error("output-flood needs release=PATH");
  const released = () => {
    try {
      Deno.statSync(release);
      return true;
    } catch {
      return false;
    }
  };
  for (let burst = 0; !released(); burst++) {
    for (let i = 0; i < 500; i++) console.log("FLOOD line " + burst + "." + i + " " + "y".repeat(80));
    for (let i = 0; i < 500; i++) console.error("FLOOD err " + burst + "." + i);
    await sleep(0);
  }
}

/**
 * Prints 5,000 lines a second for 5 s, 50 lines to a write (about 450 KB
 * and 100 writes a second: over the log's budget, within what a worker may
 * write), as a hook with a debug line in a hot path would.
 */
async function chatter() {
  const end = Date.now() + 5000;
  for (let burst = 0; Date.now() < end; burst++) {
    const numbers = Array.from({ length: 50 }, (_, i) => burst + "." + i);
    console.log(numbers.map((n) => "CHAT line " + n + " " + "y".repeat(80)).join("\n"));
    console.error(numbers.map((n) => "CHAT err " + n).join("\n"));
    await sleep(20);
  }
}

/**
 * Every way a hook has to use a descriptor by number: node:fs (which under
 * deno reaches only 0-2), Deno's fd APIs where they exist, and node:net
 * sockets over a raw descriptor (pipes and sockets). Returns the ways that
 * worked, and keeps the sockets for writing later.
 */
const opened = [];
function probeFd(fd) {
  const ways = [];
  try {
    fs.fstatSync(fd);
    ways.push("fstat");
  } catch {}
  if (fd <= 3) return ways; // the protocol's own: not written to
  try {
    fs.writeSync(fd, "PROBE fs " + fd + "\n");
    ways.push("fs.write");
  } catch {}
  for (const api of ["fstatSync", "fsyncSync", "ftruncateSync"]) {
    if (typeof Deno[api] !== "function") continue;
    try {
      Deno[api](fd);
      ways.push("Deno." + api);
    } catch {}
  }
  try {
    const socket = new Socket({ fd, readable: false, writable: true });
    socket.on("error", () => {});
    opened.push([fd, socket]);
    ways.push("net.Socket");
  } catch {}
  return ways;
}

/**
 * Writes to every socket opened by the probe, after the answer: some are
 * deno's own (its event loop, its signal pipe), and writing to them may
 * well end the worker.
 */
function writeOpened() {
  for (const [fd, socket] of opened) socket.write("PROBE socket " + fd + "\n");
}

/**
 * Answers call number id (its own) with an error nested 500,000 arrays deep:
 * JSON.parse takes it, String() of it overflows the stack.
 */
function forgeDeep(id) {
  const depth = 500000;
  const json = encoder.encode('{"t":"result","ok":false,"error":' + "[".repeat(depth) + "]".repeat(depth) + "}");
  channel().write(frame(5 + json.byteLength, id, json));
  return new Promise(() => {});
}

const cases = {
  none: () => "nothing",
  "frames-deep": (id) => forgeDeep(id),
  exit: () => Deno.exit(0),
  "frames-big": () => {
    setTimeout(() => floodChannel(16 * MiB - 64).catch(() => {}), 20);
    return "flooding";
  },
  "frames-small": () => {
    setTimeout(() => floodChannel(16).catch(() => {}), 20);
    return "flooding";
  },
  "output-flood": (_id, body) => {
    floodOutput(param(body, "release"));
    return "flooding";
  },
  chatter: async () => {
    await chatter();
    return "chatted";
  },
  descriptors: () => {
    const reached = [];
    for (let fd = 0; fd <= 1024; fd++) {
      const ways = probeFd(fd);
      if (ways.length > 0) reached.push(fd + ":" + ways.join("+"));
    }
    setTimeout(writeOpened, 100);
    return reached.join(" ");
  },
  "mem-arraybuffers": () => {
    const keep = [];
    for (let i = 0; i < 64; i++) keep.push(new Uint8Array(16 * MiB).fill(1));
    return "held " + keep.length * 16 + " MiB";
  },
  "mem-wasm": () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
    for (let i = 0; i < 64; i++) {
      memory.grow(256);
      new Uint8Array(memory.buffer).fill(1);
    }
    return "grew to " + memory.buffer.byteLength / MiB + " MiB";
  },
  "mem-web-workers": () => new Promise((resolve, reject) => {
    const source = "const a = new Uint8Array(640 * 1048576); a.fill(1); postMessage(a.length);";
    let done = 0;
    for (let i = 0; i < 4; i++) {
      const worker = new Worker("data:text/javascript," + encodeURIComponent(source), { type: "module" });
      worker.onmessage = () => ++done === 4 && resolve("4 workers held 640 MiB each");
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error("web worker: " + e.message));
      };
    }
  }),
  "mem-threads": async () => {
    const { Worker } = await import("node:worker_threads");
    const code = "const a = new Uint8Array(640 * 1048576); a.fill(1); " +
      "require('node:worker_threads').parentPort.postMessage(a.length);";
    await Promise.all([0, 1, 2, 3].map(() => new Promise((resolve, reject) => {
      const worker = new Worker(code, { eval: true });
      worker.on("message", resolve);
      worker.on("error", reject);
    })));
    return "4 threads held 640 MiB each";
  },
  "mem-sab": () => {
    const keep = [];
    for (let i = 0; i < 64; i++) keep.push(new Uint8Array(new SharedArrayBuffer(16 * MiB)).fill(1));
    return "held " + keep.length * 16 + " MiB shared";
  },
  "mem-small-buffers": () => {
    const keep = [];
    for (let i = 0; i < 1024 * 1024; i++) keep.push(new Uint8Array(1024).fill(1));
    return "held " + keep.length + " buffers of 1 KiB";
  },
  "mem-strings": () => {
    // Flat strings of 1 KiB each (a concatenation would share one string).
    const keep = [];
    for (let i = 0; i < 1024 * 1024; i++) keep.push(String(i).padStart(1024, "x"));
    return "held " + keep.length + " strings";
  },
  "mem-legit": () => {
    // Well under max_memory 64MiB: 24 MiB of buffers and a 10 MiB heap.
    const buffers = [];
    for (let i = 0; i < 3; i++) buffers.push(new Uint8Array(8 * MiB).fill(i + 1));
    const objects = Array.from({ length: 200000 }, (_, i) => ({ i, s: "v" + i }));
    const sum = buffers.reduce((n, b) => n + b[b.length - 1], 0) + objects.length;
    return "sum " + sum;
  },
};

// Call IDs count from 1 in each worker, one per call: the hook knows its own.
let calls = 0;

export default async function (input) {
  const id = ++calls;
  const text = await new Response(input.message).text();
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  const name = param(body, "case");
  if (!Object.hasOwn(cases, name)) return { action: "defer", message: "unknown case " + name };
  const headers = ["X-Case: " + name, "X-Pid: " + Deno.pid];
  try {
    headers.push("X-Result: " + clean(await cases[name](id, body)));
  } catch (err) {
    headers.push("X-Error: " + clean((err?.name ?? "") + ": " + (err?.message ?? err)));
  }
  return { action: "accept", headers };
}
`;

const MiB = 1024 * 1024;

/** What one SMTP transaction ended with. */
interface Sent {
  reply: string;
  qid: string | undefined;
  token: string;
}

let sequence = 0;

/** Sends one probe message to alice@example.test; `extra` adds to its body. */
async function send(server: Server, name: string, extra = ""): Promise<Sent> {
  const token = `token-${process.pid}-${++sequence}`;
  const result = await swaks(server, [
    "--from",
    "carol@client.test",
    "--to",
    "alice@example.test",
    "--body",
    `case=${name} token=${token}${extra}`,
  ]);
  const lines = replies(result.stdout);
  const at = lines.findIndex((l) => l.startsWith("354"));
  const reply = at >= 0 ? lines[at + 1] ?? "" : "";
  return { reply, qid: reply.match(/^250 2\.0\.0 Ok: queued as (\w+)$/)?.[1], token };
}

/** The delivered copy of an accepted probe; fails when it was not accepted. */
async function delivered(server: Server, sent: Sent): Promise<string> {
  assert.ok(
    sent.qid,
    `not accepted: ${JSON.stringify(sent.reply)}\n${server.stderr().slice(-2000)}`,
  );
  return await eventually(
    async () =>
      (await maildirMessages(server.dataDir, "example.test", "alice")).find((m) =>
        m.includes(sent.token)
      ),
    15_000,
    `delivery of ${sent.qid}`,
  );
}

function header(message: string, name: string): string | undefined {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
}

/** Sends a probe that must be accepted; returns the delivered message. */
async function accepted(server: Server, name: string, extra = ""): Promise<string> {
  const message = await delivered(server, await send(server, name, extra));
  assert.equal(header(message, "X-Case"), name);
  return message;
}

/** Application log lines matching `pattern`. */
function logLines(server: Server, pattern: RegExp): string[] {
  return server.stderr().split("\n").filter((l) => pattern.test(l));
}

/**
 * A session of `count` RCPT commands (in transactions of 50), each of which
 * must get 250, ended with QUIT. (How fast is for the benchmarks.)
 */
async function rcptSession(server: Server, count: number): Promise<void> {
  const session = await rawSession(server);
  try {
    assert.match(await session.read(), /^220 /);
    assert.match(await session.send("EHLO client.test"), /^250 /);
    let inTransaction = 0;
    for (let i = 0; i < count; i++) {
      if (inTransaction === 0) {
        assert.match(await session.send("MAIL FROM:<carol@client.test>"), /^250 /);
      }
      assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
      if (++inTransaction === 50) {
        assert.match(await session.send("RSET"), /^250 /);
        inTransaction = 0;
      }
    }
    assert.match(await session.send("QUIT"), /^221 /);
  } finally {
    session.close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const USERS = { "domains/example.test/users": "alice\n" };

describe("hostile hook: the answer channel", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 20s\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  for (
    const [name, cause] of [
      ["frames-big", /cause="Cannot read frame: length 167\d{5} is out of range"/],
      ["frames-small", /cause="a result for call 424242, which is not in flight"/],
    ] as const
  ) {
    it(`ends a worker that writes ${name === "frames-big" ? "16 MiB frames" : "frames no call asked for"} on fd 3, at once, and RCPT is served`, async () => {
      const first = await accepted(server, "none");
      const pid = Number(header(first, "X-Pid"));
      const message = await accepted(server, name);
      assert.equal(header(message, "X-Result"), "flooding");
      await rcptSession(server, 200);
      const ended = new RegExp(
        `level=error msg="hook worker broke the protocol; it is ended" hook=post-data pid=${pid} `,
      );
      await eventually(
        () => Promise.resolve(logLines(server, ended)[0]),
        10_000,
        "the protocol error line",
      );
      assert.match(logLines(server, ended)[0]!, cause);
      assert.equal(logLines(server, ended).length, 1, "one line for the event");
      await eventually(
        () => Promise.resolve(alive(pid) ? undefined : true),
        10_000,
        "the worker to end",
      );
      // Nothing lost: the next message gets a fresh worker.
      const next = await accepted(server, "none");
      assert.notEqual(Number(header(next, "X-Pid")), pid);
    });
  }
});

describe("hostile hook: a forged answer too deep to turn into text", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 20s\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  it("ends the worker and answers 451; Postern lives on (under Deno it died of a RangeError)", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    const sent = await send(server, "frames-deep");
    assert.equal(sent.reply, "451 4.3.0 Message could not be checked, try again later");
    const ended = new RegExp(
      `level=error msg="hook worker broke the protocol; it is ended" hook=post-data pid=${pid} ` +
        `cause="a result whose error is not text \\(call 2\\)"`,
    );
    await eventually(
      () => Promise.resolve(logLines(server, ended)[0]),
      10_000,
      "the protocol error line",
    );
    assert.equal(server.child.exitCode, null, `Postern exited:\n${server.stderr().slice(-1500)}`);
    const next = await accepted(server, "none");
    assert.notEqual(Number(header(next, "X-Pid")), pid);
  });
});

describe("hostile hook: output floods", () => {
  let server: Server;
  let release: string;
  before(async () => {
    release = join(await tempDir("postern-flood-"), "release");
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": [
          "hooks:",
          "  post_data:",
          "    timeout: 20s",
          "    allow:",
          `      read: [${JSON.stringify(release)}]`,
          "",
        ].join("\n"),
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(async () => {
    // Also when the test failed: the flood ends.
    if (release) await writeFile(release, "").catch(() => {});
    await cleanup(server);
  });

  it("ends a worker that floods its output between calls, once, with the cause; the next message gets a fresh worker", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    const logBefore = server.stderr().length;
    // The flood goes on until the test creates the release file.
    const message = await accepted(server, "output-flood", ` release=${release}`);
    assert.equal(header(message, "X-Result"), "flooding");
    // This flood prints line by line as fast as it can: which limit it meets
    // first (writes or bytes a second, or the budget between calls) depends
    // on how Postern's reads keep up; any ends the worker.
    const ended = new RegExp(
      `level=error msg="hook worker wrote too much output; it is ended" hook=post-data ` +
        `pid=${pid} cause="(its output came in more than 1000 writes in one second|` +
        `it wrote more than 1048576 bytes of output in one second|` +
        `its output went over its budget \\(200 lines, 65536 bytes a second\\) while no ` +
        `call was in flight)"`,
    );
    await eventually(
      () => Promise.resolve(logLines(server, ended)[0]),
      10_000,
      "the line that ends the worker",
    );
    await eventually(
      () => Promise.resolve(alive(pid) ? undefined : true),
      10_000,
      "the worker to end",
    );
    const flood = logLines(server, new RegExp(`msg="hook output" hook=post-data pid=${pid} `));
    assert.match(flood[0] ?? "", /line="FLOOD (line|err) 0\.0[ "]/, "the first line is logged");
    assert.ok(flood.length <= 200, `${flood.length} flood lines logged`);
    assert.equal(logLines(server, ended).length, 1, "one line for the event");
    const logged = server.stderr().length - logBefore;
    assert.ok(logged < 512 * 1024, `${logged} bytes of application log`);
    const next = await accepted(server, "none");
    assert.notEqual(Number(header(next, "X-Pid")), pid);
  });
  it("logs the first lines of a call's chatter and one line about the rest; RCPT is served meanwhile; the worker lives on", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    const logBefore = server.stderr().length;
    const sending = send(server, "chatter");
    const over = new RegExp(
      `level=warn msg="hook output is over its budget; it is dropped until it calms down" ` +
        `hook=post-data pid=${pid} lines_per_second=200 bytes_per_second=65536`,
    );
    const chatting = new RegExp(`msg="hook output" hook=post-data pid=${pid} line="CHAT`);
    await eventually(
      () => Promise.resolve(logLines(server, chatting)[0]),
      10_000,
      "the chatter to start",
    );
    await rcptSession(server, 200);
    const message = await delivered(server, await sending);
    assert.equal(header(message, "X-Result"), "chatted");
    assert.equal(Number(header(message, "X-Pid")), pid, "the same worker answered");
    const logged = server.stderr().length - logBefore;
    await eventually(
      () => Promise.resolve(logLines(server, over)[0]),
      10_000,
      "the over-budget line",
    );
    const chat = logLines(server, new RegExp(`msg="hook output" hook=post-data pid=${pid} `));
    assert.match(chat[0] ?? "", /line="CHAT (line|err) 0\.0[ "]/, "the first line is logged");
    assert.ok(chat.length <= 400, `${chat.length} lines of chatter logged`);
    assert.equal(logLines(server, over).length, 1, "one line says the rest is dropped");
    assert.ok(logged < 512 * 1024, `${logged} bytes of application log`);
    assert.deepEqual(
      logLines(
        server,
        new RegExp(`wrote too much output; it is ended" hook=post-data pid=${pid} `),
      ),
      [],
      "the worker was not ended",
    );
    assert.ok(alive(pid), "the worker lives on");
  });
});

describe("hostile hook: descriptors Postern inherited", () => {
  let server: Server;
  let out: string;
  let listener: NetServer;
  const received: string[] = [];
  /** What Postern's extra descriptors point to (readlink of /proc/PID/fd/N). */
  const inherited = new Map<number, string>();
  before(async () => {
    out = await tempDir("postern-fds-");
    listener = createServer((socket: Socket) => {
      socket.on("data", (chunk) => received.push(String(chunk)));
      socket.on("error", () => {});
    });
    const port = await new Promise<number>((resolve) => {
      listener.listen(0, "127.0.0.1", () => {
        const address = listener.address();
        resolve(typeof address === "object" && address ? address.port : 0);
      });
    });
    await writeFile(join(out, "file-5"), "five\n");
    await writeFile(join(out, "file-200"), "two hundred\n");
    // Without close-on-exec, as a service manager or a shell hands them over:
    // files, a pipe to a reader the test owns, a pipe, and TCP sockets.
    const script = [
      `exec 5<>"${out}/file-5" 200>>"${out}/file-200"`,
      `exec 47> >(exec cat > "${out}/pipe-47")`,
      `exec 9< <(:)`,
      `exec 6<>/dev/tcp/127.0.0.1/${port} 48<>/dev/tcp/127.0.0.1/${port}`,
      `exec "$@"`,
    ].join("\n");
    const configDir = await tempDir("postern-config-");
    // A pipe alias that lists its own descriptors ($$: the shell).
    const pipeScript = join(out, "pipe-fds.sh");
    await writeFile(
      pipeScript,
      `#!/bin/sh\nls -l /proc/$$/fd > "${out}/pipe-fds.tmp"\nmv "${out}/pipe-fds.tmp" "${out}/pipe-fds"\ncat > /dev/null\n`,
    );
    const { chmod } = await import("node:fs/promises");
    await chmod(pipeScript, 0o755);
    server = await startServer({
      configDir,
      wrapper: ["bash", "-c", script, "bash"],
      config: {
        ...USERS,
        "domains/example.test/aliases": `fds: | ${pipeScript}\n`,
        "postern.yaml": "hooks:\n  allow_unsandboxed_exec: true\n  post_data:\n    timeout: 50s\n",
        "hooks/post-data.ts": PROBE_HOOK,
        // Lists its own descriptors ($$: the shell) for the test.
        "hooks/alias-exists":
          `#!/bin/sh\nls -l /proc/$$/fd > "${out}/exec-fds.tmp"\nmv "${out}/exec-fds.tmp" "${out}/exec-fds"\nexit 1\n`,
      },
    });
    await chmod(join(configDir, "hooks", "alias-exists"), 0o755);
    for (const fd of [5, 6, 9, 47, 48, 200]) {
      inherited.set(fd, await readlink(`/proc/${server.child.pid}/fd/${fd}`).catch(() => ""));
    }
  });

  /** The targets of a process's descriptors that are Postern's extra ones. */
  async function inheritedHeldBy(pid: number): Promise<string[]> {
    const held: string[] = [];
    const targets = new Set(inherited.values());
    for (const name of await readdir(`/proc/${pid}/fd`)) {
      const target = await readlink(`/proc/${pid}/fd/${name}`).catch(() => "");
      if (targets.has(target)) held.push(`${name} -> ${target}`);
    }
    return held;
  }
  after(async () => {
    await cleanup(server);
    listener.close();
  });

  it("Postern itself holds the extra descriptors (the test is real)", () => {
    const kinds = [...inherited.values()].map((t) => t.replace(/[:/].*/, "")).sort();
    assert.deepEqual(kinds, ["", "", "pipe", "pipe", "socket", "socket"]);
    assert.ok(inherited.get(5)!.endsWith("/file-5"), inherited.get(5));
    assert.ok(inherited.get(200)!.endsWith("/file-200"), inherited.get(200));
  });

  it("a module hook that tries every descriptor up to 1024 reaches none beyond its protocol's", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    // Checked from outside, before the hook tries anything.
    assert.deepEqual(await inheritedHeldBy(pid), [], "the worker holds Postern's descriptors");
    const message = await accepted(server, "descriptors");
    assert.equal(Number(header(message, "X-Pid")), pid);
    assert.equal(header(message, "X-Error"), undefined);
    // What it reached is its own: its protocol's, and deno's own (event
    // loop, signal pipe); none of them is one of Postern's.
    const reached = (header(message, "X-Result") ?? "").split(" ").filter((r) => r !== "");
    console.log(`descriptors the hook could use: ${reached.join(" ")}`);
    const targets = new Set(inherited.values());
    for (const entry of reached) {
      const fd = entry.split(":")[0]!;
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "(gone)");
      assert.ok(!targets.has(target), `the hook reached fd ${fd} -> ${target}`);
    }
    // Its writes (after the answer) reach none of Postern's descriptors.
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(received, [], "the hook wrote to a socket Postern inherited");
    assert.equal(await readFile(join(out, "file-5"), "utf8"), "five\n");
    assert.equal(await readFile(join(out, "file-200"), "utf8"), "two hundred\n");
    assert.equal(await readFile(join(out, "pipe-47"), "utf8"), "", "the hook wrote to the pipe");
  });

  it("an executable hook holds only its three pipes", async () => {
    const session = await rawSession(server);
    await session.send("EHLO client.test");
    await session.send("MAIL FROM:<carol@client.test>");
    await session.send("RCPT TO:<nobody@example.test>");
    session.close();
    const listing = await eventually(
      () => readFile(join(out, "exec-fds"), "utf8").catch(() => undefined),
      15_000,
      "the executable hook's listing",
    );
    const targets = [...listing.matchAll(/ \d+ -> (.*)$/gm)].map((m) => m[1]!);
    const held = targets.filter((t) => [...inherited.values()].includes(t));
    assert.deepEqual(held, [], listing);
  });
  it("a pipe alias holds only its three pipes", async () => {
    const result = await swaks(server, [
      "--from",
      "carol@client.test",
      "--to",
      "fds@example.test",
      "--body",
      "case=none",
    ]);
    assert.ok(
      replies(result.stdout).some((l) => l.startsWith("250 2.0.0 Ok: queued")),
      result.stdout,
    );
    const listing = await eventually(
      () => readFile(join(out, "pipe-fds"), "utf8").catch(() => undefined),
      15_000,
      "the pipe alias's listing",
    );
    const targets = [...listing.matchAll(/ \d+ -> (.*)$/gm)].map((m) => m[1]!);
    assert.ok(targets.length >= 3, listing);
    const held = targets.filter((t) => [...inherited.values()].includes(t));
    assert.deepEqual(held, [], listing);
  });
});

describe("hostile hook: memory", () => {
  const LIMIT = 64 * MiB;
  const BOUND = LIMIT + 128 * MiB;
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 30s\n    max_memory: 64MiB\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  /** Peak resident memory (VmHWM) of `pid` seen while `work` runs, in bytes. */
  async function peakWhile<T>(pid: number, work: Promise<T>): Promise<[number, T]> {
    let peak = 0;
    let done = false;
    const sampling = (async () => {
      for (let i = 0; i < 20_000 && !done; i++) {
        const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
        const kib = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
        if (kib === undefined && !alive(pid)) break;
        if (kib !== undefined) peak = Math.max(peak, Number(kib) * 1024);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const result = await work;
    done = true;
    await sampling;
    return [peak, result];
  }

  for (
    const name of [
      "mem-arraybuffers",
      "mem-wasm",
      "mem-web-workers",
      "mem-threads",
      "mem-sab",
      "mem-small-buffers",
      "mem-strings",
    ] as const
  ) {
    it(`holds a hook's memory within max_memory + 128 MiB: ${name}`, async () => {
      // A fresh worker for each case, so its peak is this case's own.
      assert.equal(
        (await send(server, "exit")).reply,
        "451 4.3.0 Message could not be checked, try again later",
      );
      const first = await accepted(server, "none");
      const pid = Number(header(first, "X-Pid"));
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      const idle = ["VmData", "VmRSS", "VmHWM"].map((f) =>
        `${f} ${
          Math.round(Number(new RegExp(`^${f}:\\s+(\\d+)`, "m").exec(status)?.[1]) / 1024)
        } MiB`
      ).join(", ");
      const [peak, sent] = await peakWhile(pid, send(server, name));
      console.log(
        `${name}: before ${idle}; peak resident ${(peak / MiB).toFixed(0)} MiB; ${sent.reply}`,
      );
      assert.ok(peak > 0, "the worker was measured");
      assert.ok(
        peak <= BOUND,
        `peak resident ${(peak / MiB).toFixed(0)} MiB over ${BOUND / MiB} MiB`,
      );
      if (sent.qid) {
        // Contained inside the hook: the allocation failed there.
        const message = await delivered(server, sent);
        assert.equal(header(message, "X-Result"), undefined, header(message, "X-Result"));
        assert.match(header(message, "X-Error") ?? "", /RangeError|TypeError|Error/);
      } else {
        assert.equal(sent.reply, "451 4.3.0 Message could not be checked, try again later");
      }
      // And the next message is served.
      await accepted(server, "none");
    });
  }

  it("lets a hook under the limit work: buffers and heap well below max_memory", async () => {
    const message = await accepted(server, "mem-legit");
    assert.equal(header(message, "X-Error"), undefined, header(message, "X-Error"));
    assert.equal(header(message, "X-Result"), "sum 200006");
  });
});
