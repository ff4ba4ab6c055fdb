/**
 * The hostile post-data hook of hooks_hostile_test.ts, and the list of its
 * escape attempts. The message body names the attempt (`case=NAME`); the
 * hook runs it and answers with headers: `X-Outcome: refused` and the
 * error when it threw, `X-Outcome: allowed` and `X-Result` when it did
 * not. Placeholders (`__SCRATCH__`, `__SECRET_JS_URL__`, `__PORT__`) are
 * filled in by the test: a folder outside every grant holding secret files,
 * and a loopback port nobody may reach.
 *
 * @module
 */

/** One escape attempt: its case name, what it tries, and the error expected. */
export interface Attempt {
  name: string;
  what: string;
  /** Matches `<error name>: <error message>; result …` when it must be that refusal. */
  error?: RegExp;
  /** The attempt ends the hook's worker, so the message is refused (451) instead of answered. */
  crashes?: boolean;
}

const READ = /NotCapable: Requires read access/;
/** Deno refuses a module it may not read with a TypeError. */
const IMPORT = /TypeError: Requires read access/;
const WRITE = /NotCapable: Requires write access/;
const NET = /NotCapable: Requires net access/;
const RUN = /NotCapable: Requires run access/;
const ENV = /NotCapable: Requires env access/;
const SYS = /NotCapable: Requires sys access/;

/** Every attempt the probe knows, in the order they are tried. */
export const ATTEMPTS: readonly Attempt[] = [
  // Files outside the grants, however they are reached.
  { name: "read-outside", what: "Deno.readTextFile of a file outside", error: READ },
  { name: "read-dotdot", what: "a path out of its folder through ..", error: READ },
  { name: "read-proc-root", what: "the file through /proc/self/root", error: READ },
  { name: "read-proc-environ", what: "/proc/self/environ", error: READ },
  { name: "node-fs-read", what: "node:fs readFileSync", error: READ },
  { name: "node-fs-promises", what: "node:fs/promises readFile", error: READ },
  { name: "write-outside", what: "Deno.writeTextFile outside", error: WRITE },
  { name: "node-fs-write", what: "node:fs writeFileSync outside", error: WRITE },
  { name: "remove-own", what: "removing its own module", error: WRITE },
  { name: "truncate-own", what: "truncating a file of its own folder", error: WRITE },
  { name: "temp-dir", what: "Deno.makeTempDir", error: WRITE },
  {
    name: "heap-snapshot",
    what: "node:v8 writeHeapSnapshot into its working directory",
    error: WRITE,
  },
  // Metadata and links.
  { name: "stat", what: "Deno.stat of /etc", error: READ },
  { name: "lstat", what: "Deno.lstat of a file outside", error: READ },
  { name: "read-dir", what: "Deno.readDir of /etc", error: READ },
  { name: "real-path", what: "Deno.realPath of /etc", error: READ },
  { name: "read-link", what: "Deno.readLink of /proc/self/exe", error: READ },
  { name: "node-stat", what: "node:fs statSync of /etc", error: READ },
  { name: "watch", what: "Deno.watchFs on /etc", error: READ },
  { name: "chdir", what: "Deno.chdir to /", error: READ },
  { name: "symlink", what: "a symlink in its own folder to a file outside", error: /NotCapable/ },
  { name: "hard-link", what: "a hard link to a file outside", error: /NotCapable/ },
  // Network.
  { name: "listen", what: "Deno.listen on loopback", error: NET },
  { name: "node-listen", what: "node:net listen on loopback", error: NET },
  { name: "udp", what: "node:dgram bind", error: NET },
  { name: "dns", what: "Deno.resolveDns", error: NET },
  { name: "node-dns", what: "node:dns lookup", error: /EPERM|NotCapable/ },
  { name: "node-http", what: "node:http to a port not granted", error: NET },
  { name: "websocket", what: "a WebSocket to a port not granted", error: NET },
  { name: "connect-tls", what: "Deno.connectTls to a port not granted", error: NET },
  { name: "node-tls", what: "node:tls to a port not granted", error: NET },
  { name: "node-http2", what: "node:http2 to a port not granted", error: NET },
  { name: "serve", what: "Deno.serve", error: NET },
  { name: "unix-connect", what: "a Unix socket outside", error: READ },
  { name: "unix-listen", what: "listening on a Unix socket outside", error: READ },
  { name: "fetch-file", what: "fetch of a file: URL outside", error: READ },
  { name: "inspector", what: "node:inspector opening a debugger port", error: SYS },
  // Imports.
  {
    name: "import-remote",
    what: "a dynamic import from http://127.0.0.1",
    error: /Requires import access/,
  },
  { name: "import-file", what: "a dynamic import of a module outside", error: IMPORT },
  { name: "import-computed", what: "a computed dynamic import of a module outside", error: IMPORT },
  { name: "import-data", what: "a data: module re-exporting a module outside", error: IMPORT },
  { name: "import-json", what: "a JSON import of a file outside", error: IMPORT },
  { name: "import-npm", what: "an npm: import", error: /--no-npm/ },
  { name: "require", what: "node:module createRequire of a file outside", error: READ },
  // Deno ends the process for this unstable option: the call fails (451), nothing runs.
  // Web Workers are taken away (each needs more memory than a hook's data limit allows).
  {
    name: "worker-escalate",
    what: "a Web Worker asking for more permissions",
    error: /Web Workers are not available to hooks/,
  },
  {
    name: "worker-read",
    what: "a Web Worker reading a file outside",
    error: /Web Workers are not available to hooks/,
  },
  // A node:worker_threads isolate does not fit in the worker's data limit: the worker ends.
  { name: "worker-threads", what: "node:worker_threads reading a file outside", crashes: true },
  { name: "permission-request", what: "Deno.permissions.request, then a read", error: READ },
  // FFI.
  { name: "dlopen-path", what: "Deno.dlopen by absolute path", error: /NotCapable/ },
  { name: "process-dlopen", what: "node's process.dlopen", error: /NotCapable/ },
  // Storage.
  { name: "kv", what: "Deno.openKv", error: /openKv is not a function/ },
  { name: "session-storage", what: "sessionStorage", error: /sessionStorage is not defined/ },
  // Signals to Postern.
  { name: "kill-parent", what: "Deno.kill of Postern (its parent)", error: RUN },
  { name: "process-kill", what: "node's process.kill of Postern", error: RUN },
  { name: "set-priority", what: "node:os setPriority of Postern", error: SYS },
  // Subprocesses.
  { name: "command", what: "Deno.Command(/bin/sh).output", error: RUN },
  { name: "command-spawn", what: "Deno.Command(/bin/sh).spawn", error: RUN },
  { name: "child-spawn-sync", what: "node:child_process spawnSync", error: /NotCapable/ },
  { name: "child-exec-file", what: "node:child_process execFileSync", error: /NotCapable/ },
  { name: "child-spawn", what: "node:child_process spawn", error: /NotCapable/ },
  // The environment beyond what is given, and system information.
  { name: "env-secret", what: "Deno.env.get of Postern's variable", error: ENV },
  { name: "process-env", what: "process.env of Postern's variable", error: ENV },
  { name: "process-env-keys", what: "the names in process.env", error: ENV },
  { name: "node-os-user", what: "node:os userInfo", error: SYS },
  { name: "network-interfaces", what: "Deno.networkInterfaces", error: SYS },
];

/**
 * The hook. Written with String.raw, so it holds no `${`; regular
 * expressions keep their backslashes.
 */
export const PROBE_SOURCE = String.raw`// Hostile probes for test/e2e/hooks_hostile_test.ts.
import process from "node:process";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import dgram from "node:dgram";
import dns from "node:dns";
import http from "node:http";
import os from "node:os";
import { Worker as NodeWorker } from "node:worker_threads";
import tls from "node:tls";
import http2 from "node:http2";
import inspector from "node:inspector";
import v8 from "node:v8";

const S = "__SCRATCH__";
const PORT = __PORT__;

function clean(value) {
  return String(value).replace(/[^\x20-\x7e]+/g, " ").trim().slice(0, 300);
}

/** Settles with what a Web Worker posts: its value, or the error it reports. */
function webWorker(source, options = {}) {
  return new Promise((resolve, reject) => {
    let worker;
    try {
      worker = new Worker("data:text/javascript," + encodeURIComponent(source), { type: "module", ...options });
    } catch (err) {
      reject(err);
      return;
    }
    const timer = setTimeout(() => { worker.terminate(); reject(new Error("the worker did not answer")); }, 5000);
    worker.onmessage = (e) => {
      clearTimeout(timer);
      worker.terminate();
      if (e.data[0] === "ok") resolve(e.data[1]);
      else reject(Object.assign(new Error(e.data[2]), { name: e.data[1] }));
    };
    worker.onerror = (e) => { e.preventDefault(); clearTimeout(timer); worker.terminate(); reject(new Error("worker: " + e.message)); };
  });
}

/**
 * A promise that also rejects with an error thrown outside it (deno's
 * node:net throws a denied listen from a later tick).
 */
function uncaught(executor) {
  return new Promise((resolve, reject) => {
    const onError = (e) => {
      e.preventDefault();
      reject(e.error ?? new Error(e.message));
    };
    globalThis.addEventListener("error", onError, { once: true });
    const done = (settle) => (value) => {
      globalThis.removeEventListener("error", onError);
      settle(value);
    };
    try {
      executor(done(resolve), done(reject));
    } catch (err) {
      done(reject)(err);
    }
  });
}

const REPORT = "const report = (p) => p.then((v) => self.postMessage(['ok', String(v)]), (e) => self.postMessage(['err', e.name, e.message]));";

const cases = {
  none: () => "nothing",
  learn: () => JSON.stringify({
    cwd: Deno.cwd(),
    execPath: Deno.execPath(),
    mainModule: Deno.mainModule,
    module: import.meta.url,
    pid: Deno.pid,
    ppid: Deno.ppid,
  }),
  "read-outside": () => Deno.readTextFile(S + "/secret.txt"),
  "operator-link": () => Deno.readTextFile("hooks/post-data/operator-link"),
  "read-dotdot": () => Deno.readTextFile("hooks/post-data/../../postern.yaml"),
  "read-proc-root": () => Deno.readTextFile("/proc/self/root" + S + "/secret.txt"),
  "read-proc-environ": () => Deno.readTextFile("/proc/self/environ"),
  "node-fs-read": () => readFileSync(S + "/secret.txt", "utf8"),
  "node-fs-promises": () => readFile(S + "/secret.txt", "utf8"),
  "write-outside": () => Deno.writeTextFile(S + "/written", "x"),
  "node-fs-write": () => writeFileSync(S + "/node-written", "x"),
  "remove-own": () => Deno.remove("hooks/post-data.ts"),
  "truncate-own": () => Deno.truncate("hooks/post-data/own.txt"),
  "temp-dir": () => Deno.makeTempDir(),
  stat: async () => (await Deno.stat("/etc")).isDirectory,
  lstat: async () => (await Deno.lstat(S + "/secret.txt")).size,
  "read-dir": async () => {
    const names = [];
    for await (const entry of Deno.readDir("/etc")) names.push(entry.name);
    return names.join(",");
  },
  "real-path": () => Deno.realPath("/etc"),
  "read-link": () => Deno.readLink("/proc/self/exe"),
  "node-stat": () => statSync("/etc").isDirectory(),
  watch: () => { const w = Deno.watchFs("/etc"); w.close(); return "watching"; },
  chdir: () => { Deno.chdir("/"); return Deno.cwd(); },
  symlink: async () => { await Deno.symlink(S + "/secret.txt", "hooks/post-data/link"); return "linked"; },
  "hard-link": async () => { await Deno.link(S + "/secret.txt", S + "/hard"); return "linked"; },
  listen: () => { const l = Deno.listen({ hostname: "127.0.0.1", port: 0 }); l.close(); return "listening"; },
  "node-listen": () => uncaught((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => { server.close(); resolve("listening"); });
  }),
  udp: () => uncaught((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => { socket.close(); resolve("bound"); });
  }),
  dns: () => Deno.resolveDns("localhost", "A"),
  "node-dns": async () => JSON.stringify(await dns.promises.lookup("localhost")),
  "node-http": () => new Promise((resolve, reject) => {
    const request = http.get("http://127.0.0.1:" + PORT + "/", (res) => { res.resume(); resolve("status " + res.statusCode); });
    request.once("error", reject);
  }),
  websocket: () => new Promise((resolve, reject) => {
    const ws = new WebSocket("ws://127.0.0.1:" + PORT + "/");
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onerror = (e) => reject(new Error(e.message ?? "websocket error"));
  }),
  "connect-tls": async () => { const c = await Deno.connectTls({ hostname: "127.0.0.1", port: PORT }); c.close(); return "connected"; },
  "node-tls": () => uncaught((resolve, reject) => {
    const socket = tls.connect(PORT, "127.0.0.1");
    socket.once("error", reject);
    socket.once("secureConnect", () => { socket.destroy(); resolve("connected"); });
  }),
  "node-http2": () => uncaught((resolve, reject) => {
    const session = http2.connect("http://127.0.0.1:" + PORT);
    session.once("error", reject);
    session.once("connect", () => { session.close(); resolve("connected"); });
  }),
  serve: async () => {
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response("x"));
    await server.shutdown();
    return "served";
  },
  "unix-connect": async () => {
    const conn = await Deno.connect({ transport: "unix", path: S + "/postern.sock" });
    conn.close();
    return "connected";
  },
  "unix-listen": () => {
    const listener = Deno.listen({ transport: "unix", path: S + "/listened.sock" });
    listener.close();
    return "listening";
  },
  "fetch-file": async () => (await fetch("file://" + S + "/secret.txt")).text(),
  inspector: () => { inspector.open(0, "127.0.0.1"); return inspector.url(); },
  "heap-snapshot": () => v8.writeHeapSnapshot(),
  "set-priority": () => { os.setPriority(Deno.ppid, 19); return "set"; },
  "import-remote": async () => (await import("http://127.0.0.1:" + PORT + "/remote.js")).default,
  "import-file": async () => (await import("__SECRET_JS_URL__")).default,
  "import-computed": async () => {
    const url = "file://" + [S, "secret.js"].join("/");
    return (await import(url)).default;
  },
  "import-data": async () => (await import("data:text/javascript," + encodeURIComponent('export { default } from "__SECRET_JS_URL__";'))).default,
  "import-json": async () => JSON.stringify((await import(S + "/secret.json", { with: { type: "json" } })).default),
  "import-npm": async () => String(await import("npm:" + "left-pad")),
  require: () => JSON.stringify(createRequire(import.meta.url)(S + "/secret.json")),
  "worker-escalate": () => webWorker(REPORT + "report(Deno.readTextFile('" + S + "/secret.txt'));", { deno: { permissions: { read: true } } }),
  "worker-read": () => webWorker(REPORT + "report(Deno.readTextFile('" + S + "/secret.txt'));"),
  "worker-threads": () => new Promise((resolve, reject) => {
    const code = "const { parentPort } = require('node:worker_threads'); const fs = require('node:fs');" +
      "try { parentPort.postMessage(['ok', fs.readFileSync('" + S + "/secret.txt', 'utf8')]); }" +
      "catch (e) { parentPort.postMessage(['err', e.name, e.message]); }";
    let worker;
    try {
      worker = new NodeWorker(code, { eval: true });
    } catch (err) {
      reject(err);
      return;
    }
    const timer = setTimeout(() => { worker.terminate(); reject(new Error("the worker did not answer")); }, 5000);
    worker.once("message", (m) => {
      clearTimeout(timer);
      worker.terminate();
      if (m[0] === "ok") resolve(m[1]);
      else reject(Object.assign(new Error(m[2]), { name: m[1] }));
    });
    worker.once("error", (e) => { clearTimeout(timer); reject(e); });
  }),
  "permission-request": async () => {
    await Deno.permissions.request({ name: "read", path: S });
    return await Deno.readTextFile(S + "/secret.txt");
  },
  "dlopen-path": () => {
    const lib = Deno.dlopen("/lib/x86_64-linux-gnu/libc.so.6", { getpid: { parameters: [], result: "i32" } });
    lib.close();
    return "opened";
  },
  "process-dlopen": () => { process.dlopen({ exports: {} }, "/lib/x86_64-linux-gnu/libc.so.6"); return "opened"; },
  kv: async () => { const kv = await Deno.openKv(); kv.close(); return "opened"; },
  "session-storage": () => { sessionStorage.setItem("k", "v"); return "stored"; },
  "kill-parent": () => { Deno.kill(Deno.ppid, "SIGTERM"); return "sent"; },
  "process-kill": () => { process.kill(process.ppid, "SIGKILL"); return "sent"; },
  command: async () => "exit " + (await new Deno.Command("/bin/sh", { args: ["-c", "touch " + S + "/touched"] }).output()).code,
  "command-spawn": async () => "exit " + (await new Deno.Command("/bin/sh", { args: ["-c", "touch " + S + "/touched"] }).spawn().status).code,
  "child-spawn-sync": () => {
    const result = spawnSync("/bin/sh", ["-c", "touch " + S + "/spawned"]);
    if (result.error) throw result.error;
    return "exit " + result.status;
  },
  "child-exec-file": () => String(execFileSync("/bin/sh", ["-c", "touch " + S + "/spawned"])),
  "child-spawn": () => new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn("/bin/sh", ["-c", "touch " + S + "/spawned"]);
    } catch (err) {
      reject(err);
      return;
    }
    child.once("error", reject);
    child.once("exit", (code) => resolve("exit " + code));
  }),
  "env-secret": () => Deno.env.get("POSTERN_HOSTILE_SECRET") ?? "(unset)",
  "process-env": () => process.env.POSTERN_HOSTILE_SECRET ?? "(unset)",
  "process-env-keys": () => Object.keys(process.env).join(","),
  "node-os-user": () => JSON.stringify(os.userInfo()),
  "network-interfaces": () => JSON.stringify(Deno.networkInterfaces()),
};

/** Answers that try to add header fields (escape 6). */
const answers = {
  "inject-list": (headers) => ({
    action: "accept",
    headers: [...headers, "X-A: one\r\nX-Injected: yes", "X-Folded: one\r\n two"],
  }),
  "inject-bare": (headers) => ({
    action: "accept",
    headers: [
      ...headers,
      "X-Bad-Cr: one\rX-Injected: yes",
      "X-Bad-Lf: one\nX-Injected: yes",
      "X-Nul: one\u0000X-Injected: yes",
      "Bad Name: x",
      "X-Bad\r\nX-Injected: yes",
    ],
  }),
  "inject-record": () => ({
    action: "accept",
    headers: {
      "X-Case": "inject-record",
      "X-Bad-Note": "a\r\nX-Injected: yes",
      "X-Bad\nX-Injected": "v",
      "X-Bad-Cr": "a\rX-Injected: yes",
      "X-Nul": "a\u0000X-Injected: yes",
      "Bad Name": "x",
    },
  }),
  "subject-copy": (headers, text) => {
    // A decoded Subject: the sender chose every byte of it.
    const head = text.slice(0, text.indexOf("\r\n\r\n"));
    const word = head.match(/^Subject: =\?UTF-8\?B\?([A-Za-z0-9+\/=]+)\?=/m);
    const subject = word ? new TextDecoder().decode(Uint8Array.from(atob(word[1]), (c) => c.charCodeAt(0))) : "";
    return { action: "accept", headers: [...headers, "X-Subject-Copy: " + subject] };
  },
};

export default async function (input) {
  const text = await new Response(input.message).text();
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  const name = (body.match(/case=(\S+)/) ?? [])[1] ?? "";
  const headers = ["X-Case: " + name];
  if (Object.hasOwn(answers, name)) return answers[name](headers, text);
  if (!Object.hasOwn(cases, name)) return { action: "defer", message: "unknown case " + name };
  try {
    const value = await cases[name]();
    headers.push("X-Outcome: allowed", "X-Result: " + clean(value));
  } catch (err) {
    headers.push(
      "X-Outcome: refused",
      "X-Error-Name: " + clean(err?.name ?? typeof err),
      "X-Error: " + clean(err?.message ?? err),
    );
  }
  return { action: "accept", headers };
}
`;
