/**
 * What the hostile hook runtime tests share: the probe hook, which does
 * what the message body names (`case=NAME`), and sending a probe over SMTP
 * and reading back what the hook answered in its headers.
 *
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import { eventually, maildirMessages, replies, type Server, swaks } from "./harness.ts";

/** The probe hook (String.raw: no `${` inside, backslashes kept). */
export const PROBE_HOOK = String.raw`// Hostile probes for test/e2e/hooks_hostile_runtime_*_test.ts.
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

/** A mebibyte, in bytes. */
export const MiB = 1024 * 1024;

/** What one SMTP transaction ended with. */
export interface Sent {
  reply: string;
  qid: string | undefined;
  token: string;
}

let sequence = 0;

/** Sends one probe message to alice@example.test; `extra` adds to its body. */
export async function send(server: Server, name: string, extra = ""): Promise<Sent> {
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
export async function delivered(server: Server, sent: Sent): Promise<string> {
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

/** The value of header `name` in a delivered message (its first occurrence). */
export function header(message: string, name: string): string | undefined {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
}

/** Sends a probe that must be accepted; returns the delivered message. */
export async function accepted(server: Server, name: string, extra = ""): Promise<string> {
  const message = await delivered(server, await send(server, name, extra));
  assert.equal(header(message, "X-Case"), name);
  return message;
}

/** True while process `pid` exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The one user of every test server: alice@example.test. */
export const USERS = { "domains/example.test/users": "alice\n" };
