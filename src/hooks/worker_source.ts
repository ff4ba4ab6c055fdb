/**
 * The bootstrap every module-hook worker runs: `deno run <flags>
 * hook_worker.js <file URL of the hook module>`. It is kept as text because it must exist
 * as a file for deno to run, also when Postern itself is a compiled binary
 * or runs on Bun; `module_pool.ts` writes it into the data directory.
 *
 * Why it is shaped this way:
 * - The hook is loaded with a dynamic `import()`. Deno checks every module
 *   of a dynamically imported graph against `--allow-read`, but not the
 *   static graph of the entry module, so `import x from "/etc/shadow"` in
 *   a hook fails here instead of being read.
 * - Answers go out on descriptor 3, not standard output, so nothing a hook
 *   prints (console, `Deno.stdout`, `node:fs` on fd 1, a Web Worker's
 *   console) can be taken for an answer: both standard streams are the
 *   hook's log. Standard input carries the requests, so it is hidden from
 *   the hook (`Deno.stdin`, `process.stdin`). Hiding is not a wall: a hook
 *   can still reach descriptors 0 and 3 (`new Socket({ fd: 3 })`,
 *   `process._getActiveHandles()`), and with them read the requests of its
 *   own calls and forge or break the answers of its own worker. Postern
 *   therefore reads descriptor 3 as hostile input (see `frames.ts` and
 *   `worker.ts`): a frame is at most `MAX_FRAME_BYTES`, decoding is linear,
 *   and a frame that is malformed, too large or that no call asked for ends
 *   the worker at once. A hook cannot reach another hook's workers, nor any
 *   other descriptor of Postern (the spawn path leaves the worker only its
 *   four protocol descriptors; see `runtime/descriptors.ts`).
 * - A result larger than a frame may carry fails the call with an error
 *   that says so, instead of ending the worker.
 * - Requests are read through a `node:net` socket on descriptor 0, not
 *   `Deno.stdin`: deno reads standard input on a thread of its blocking
 *   pool, which then wakes the main thread, one more hand-over between
 *   CPUs on every call (seen with strace; the median round trip fell from
 *   0.14 to 0.09 ms without it).
 * - The frames written in one turn of the event loop go out in one write
 *   (see `FrameBatcher` in `frames.ts`).
 * - Web storage (`caches`, `localStorage`, `sessionStorage`) is removed:
 *   deno keeps it on disk without any write permission.
 * - Web Workers are removed (`Worker` throws a TypeError that says why):
 *   each starts its own V8, which reserves 512 MiB of code space, more than
 *   the worker's data limit leaves (see `withDataLimit` in `sandbox.ts`).
 *   `node:worker_threads` cannot be removed that way (an import binding);
 *   a thread started there does not fit the limit either and ends the
 *   worker.
 * - The message of a post-data call is a pull stream: each read asks
 *   Postern for the next chunk, so the message is never held whole and a
 *   hook that does not read it costs nothing.
 * - Shared state (`shared.increment`, `get`, `set`, the third argument of
 *   a call) is asked of Postern over the same channel, with the call's ID;
 *   the hook needs no network grant (see `shared_state.ts`).
 * - An unhandled rejection or uncaught error in a hook's background work is
 *   logged instead of ending the worker.
 * - The worker exits at the end of its requests (Postern closed them) with
 *   the exit function taken before the hook loads, so a hook that replaces
 *   `Deno.exit` or `process.exit` does not keep it alive that way. That is
 *   only the first line: a hook can also keep the event loop from ever
 *   getting there (a loop that never yields), so the worker is also watched
 *   from outside its process, and its process group ends when Postern does
 *   (see `runtime/child.ts`).
 *
 * @module
 */

import { MAX_FRAME_BYTES } from "./frames.ts";

/** Source of the worker bootstrap, an ES module for deno. */
export const WORKER_SOURCE = `// Postern hook worker (generated; do not edit).
import process from "node:process";
import { Socket } from "node:net";
import { Readable } from "node:stream";

// Taken before any code of the hook runs, which may replace Deno.exit.
const exit = Deno.exit;
const JSON_FRAME = 1, CHUNK = 2, END = 3;
const channel = new Socket({ fd: 3, readable: false, writable: true });
const requests = new Socket({ fd: 0, readable: true, writable: false });
const closedStdin = { read: () => Promise.resolve(null), readable: new ReadableStream({ start(c) { c.close(); } }), close() {} };
Object.defineProperty(Deno, "stdin", { value: closedStdin, configurable: true });
Object.defineProperty(process, "stdin", { value: Readable.from([]), configurable: true });
delete globalThis.caches;
delete globalThis.localStorage;
delete globalThis.sessionStorage;
class NoWorker {
  constructor() {
    throw new TypeError("Web Workers are not available to hooks: each would need 512 MiB more than the hook's memory limit");
  }
}
Object.defineProperty(globalThis, "Worker", { value: NoWorker, configurable: true, writable: true });
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  console.error("unhandled rejection in hook:", e.reason);
});
globalThis.addEventListener("error", (e) => {
  e.preventDefault();
  console.error("uncaught error in hook:", e.error ?? e.message);
});

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// Frames of this turn, written together once its microtasks have run.
let pending = [];
let pendingBytes = 0;
let written = null;
function flush() {
  let out = pending[0];
  if (pending.length > 1) {
    out = new Uint8Array(pendingBytes);
    let at = 0;
    for (const frame of pending) {
      out.set(frame, at);
      at += frame.byteLength;
    }
  }
  pending = [];
  pendingBytes = 0;
  const done = written;
  written = null;
  channel.write(out, () => done.resolve());
}
function send(kind, id, payload) {
  const frame = new Uint8Array(9 + payload.byteLength);
  const view = new DataView(frame.buffer);
  view.setUint32(0, 5 + payload.byteLength);
  view.setUint8(4, kind);
  view.setUint32(5, id);
  frame.set(payload, 9);
  pending.push(frame);
  pendingBytes += frame.byteLength;
  if (!written) {
    written = Promise.withResolvers();
    queueMicrotask(flush);
  }
  return written.promise;
}
// Postern ends a worker that sends a longer frame (kind and id take 5 bytes).
const MAX_PAYLOAD = ${MAX_FRAME_BYTES - 5};
function sendJson(id, value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    text = JSON.stringify({ t: "result", ok: false, error: "the hook's result cannot be sent as JSON: " + err });
  }
  let payload = encoder.encode(text);
  if (payload.byteLength > MAX_PAYLOAD) {
    payload = encoder.encode(JSON.stringify({
      t: "result",
      ok: false,
      error: "the hook's result is " + payload.byteLength + " bytes of JSON; at most ${
  MAX_FRAME_BYTES - 5
} can be sent",
    }));
  }
  return send(JSON_FRAME, id, payload);
}
function describe(err) {
  const text = err instanceof Error ? (err.stack ?? String(err)) : String(err);
  return text.slice(0, 4000);
}

const streams = new Map();
function messageStream(id) {
  const state = { waiting: null, done: false };
  streams.set(id, state);
  return new ReadableStream({
    pull(controller) {
      if (state.done) {
        controller.close();
        return;
      }
      return new Promise((resolve) => {
        state.waiting = (kind, payload) => {
          // A stream the hook cancelled meanwhile takes nothing more.
          if (state.done) {
            // Nothing: cancel() settled the pull.
          } else if (kind === END) {
            state.done = true;
            controller.close();
          } else {
            controller.enqueue(payload);
          }
          resolve();
        };
        sendJson(id, { t: "pull" });
      });
    },
    cancel() {
      state.done = true;
      const waiting = state.waiting;
      state.waiting = null;
      waiting?.(END, null);
    },
  }, { highWaterMark: 0 });
}

// Shared state (the third argument): each request goes out with its
// call's ID and is answered by Postern, which keeps the state in the
// cluster's server; nothing is asked once the call has ended.
const sharedWaiting = new Map();
let sharedNext = 1;
function sharedState(id) {
  const ask = (op, fields) => new Promise((resolve, reject) => {
    if (!streams.has(id)) {
      reject(new Error("shared." + op + " was called after the hook's call ended"));
      return;
    }
    const rid = sharedNext++;
    sharedWaiting.set(rid, { resolve, reject, id });
    sendJson(id, { t: "shared", rid, op, ...fields });
  });
  return {
    increment: (key, by = 1, ttl = 0) => ask("increment", { key, by, ttl }),
    get: (key) => ask("get", { key }),
    set: (key, value, ttl = 0) => ask("set", { key, value, ttl }),
  };
}

async function call(fn, id, request) {
  const input = { ...request.input };
  // Marks the call as running (a stream state, whether or not it has a message).
  if (request.message) input.message = messageStream(id);
  else streams.set(id, { waiting: null, done: true });
  try {
    const value = await fn(input, hookState, sharedState(id));
    await sendJson(id, { t: "result", ok: true, value });
  } catch (err) {
    await sendJson(id, { t: "result", ok: false, error: describe(err) });
  } finally {
    streams.delete(id);
    for (const [rid, waiting] of sharedWaiting) {
      if (waiting.id !== id) continue;
      sharedWaiting.delete(rid);
      waiting.reject(new Error("the hook's call ended before its shared-state answer"));
    }
  }
}

let fn;
// The second argument of every call: one object for the life of this
// worker, as GreenArrow's pre-delivery-attempt hook has its state hash. It
// is never written anywhere: whatever replaces this worker (a reload, a
// restart, a timeout, a crash, a limit) starts a new state.
const hookState = {};
try {
  const module = await import(Deno.args[0]);
  if (typeof module.default !== "function") {
    throw new TypeError("the hook module has no default export function");
  }
  fn = module.default;
} catch (err) {
  await sendJson(0, { t: "load_error", error: describe(err) });
  await new Promise(() => {});
}
await sendJson(0, { t: "ready" });

let buffer = new Uint8Array(0);
requests.on("end", () => exit(0));
requests.on("error", () => exit(0));
requests.on("data", (chunk) => {
  // A plain Uint8Array, so slice() below copies (Buffer's slice is a view).
  const value = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (buffer.byteLength === 0) {
    buffer = value;
  } else {
    const joined = new Uint8Array(buffer.byteLength + value.byteLength);
    joined.set(buffer);
    joined.set(value, buffer.byteLength);
    buffer = joined;
  }
  let offset = 0;
  while (buffer.byteLength - offset >= 4) {
    const view = new DataView(buffer.buffer, buffer.byteOffset + offset);
    const length = view.getUint32(0);
    if (buffer.byteLength - offset < 4 + length) break;
    const kind = view.getUint8(4);
    const id = view.getUint32(5);
    const payload = buffer.slice(offset + 9, offset + 4 + length);
    offset += 4 + length;
    // Each frame is handled once, whatever happens while handling it: the
    // buffer is cut after the loop, so a throw here must not reach it.
    try {
      if (kind === JSON_FRAME) {
        const request = JSON.parse(decoder.decode(payload));
        if (request.t === "call") call(fn, id, request);
        else if (request.t === "shared_result") {
          const waiting = sharedWaiting.get(request.rid);
          if (waiting && waiting.id === id) {
            sharedWaiting.delete(request.rid);
            if (request.ok) waiting.resolve(request.value);
            else waiting.reject(new Error(String(request.error)));
          }
        }
      } else {
        const state = streams.get(id);
        const waiting = state?.waiting;
        if (waiting) {
          state.waiting = null;
          waiting(kind, payload);
        }
      }
    } catch (err) {
      console.error("hook worker: cannot handle a frame:", err);
    }
  }
  buffer = buffer.subarray(offset);
});
`;
