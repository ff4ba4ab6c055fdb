/**
 * A hostile module hook against the resources the hook runtime holds back,
 * end to end over SMTP (issue 15):
 * - descriptors: Postern started holding extra files, pipes and sockets
 *   (at 5, 6, 9, 47, 48, 200) gives a module hook, an executable hook and a
 *   pipe alias none of them;
 * - memory: however a hook allocates (ArrayBuffers, WebAssembly memory,
 *   Web Workers, node:worker_threads) its worker's peak resident memory
 *   stays within max_memory + 128 MiB, and a hook under the limit works.
 *
 * The answer channel and output floods are in hooks_hostile_runtime_test.ts;
 * the probe hook is in hooks_hostile_runtime_fixtures.ts.
 */

import assert from "node:assert/strict";
import { readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  rawSession,
  replies,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";
import {
  accepted,
  alive,
  delivered,
  header,
  MiB,
  PROBE_HOOK,
  send,
  USERS,
} from "./hooks_hostile_runtime_fixtures.ts";

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
