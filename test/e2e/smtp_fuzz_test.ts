/**
 * A fuzz test of the SMTP intake (issue 14): random and mutated command
 * streams against the real server, sent in lock step, pipelined in one
 * write, or cut into random pieces, in plain text and after STARTTLS.
 * Bounded by time (FUZZ_MS, default 20 s) and count (FUZZ_SESSIONS,
 * default 400). Checks:
 *
 * - every reply line is well formed (three digits, then a space, a hyphen
 *   or the end; CRLF; continuation lines keep the code);
 * - the server stays up, logs no unexpected or unhandled error, and serves
 *   a fresh client afterwards;
 * - nothing partial in the spool: no unsealed file once the sessions
 *   are closed, and every queued or delivered message is whole.
 *
 * The seed is printed; FUZZ_SEED=<seed> replays a run, and FUZZ_SESSION=<n>
 * only its session n. What the sessions send is drawn in smtp_fuzz_streams.ts.
 */

import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, it } from "node:test";
import * as v from "valibot";
import { EnvelopeSchema } from "../../src/queue/mod.ts";
import { cleanup, eventually, type Server, startServer, swaks } from "./harness.ts";
import { partialSpoolFiles, queuedFiles } from "../support/spool_files.ts";
import { Dice, send, stream } from "./smtp_fuzz_streams.ts";

const SEED = Number(process.env["FUZZ_SEED"] ?? Math.floor(Math.random() * 2 ** 31));
const ONLY = process.env["FUZZ_SESSION"] === undefined
  ? undefined
  : Number(process.env["FUZZ_SESSION"]);
const BUDGET_MS = Number(process.env["FUZZ_MS"] ?? 20_000);
const MAX_SESSIONS = Number(process.env["FUZZ_SESSIONS"] ?? 400);
const PARALLEL = 3;

/** What one session saw. */
interface Seen {
  /** Reply bytes, plain then TLS. */
  replies: string[];
  /** True when the server closed the connection (so its last reply must be complete). */
  closedByServer: boolean[];
}

/** Reads everything a socket sends; `idle` resolves after `quietMs` without data or at close. */
function collect(socket: Socket) {
  const state = { text: "", closed: false, last: Date.now() };
  socket.on("data", (chunk: Buffer) => {
    state.text += chunk.toString("latin1");
    state.last = Date.now();
  });
  socket.on("end", () => state.closed = true);
  socket.on("close", () => state.closed = true);
  socket.on("error", () => {});
  const idle = async (quietMs: number, capMs = 10_000) => {
    const start = Date.now();
    while (!state.closed && Date.now() - state.last < quietMs && Date.now() - start < capMs) {
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const until = async (match: RegExp, capMs = 5_000) => {
    const start = Date.now();
    while (!state.closed && !match.test(state.text) && Date.now() - start < capMs) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return match.test(state.text);
  };
  return { state, idle, until };
}

/** One fuzz session; plain, or STARTTLS first when the dice say so. */
async function session(server: Server, seed: number): Promise<Seen> {
  const d = new Dice(seed);
  const seen: Seen = { replies: [], closedByServer: [] };
  const plain = connect(server.port, server.host);
  const p = collect(plain);
  await new Promise<void>((resolve) => {
    plain.once("connect", () => resolve());
    plain.once("error", () => resolve());
  });
  try {
    await p.until(/^220 .*\r\n/);
    if (d.chance(0.3)) {
      plain.write("EHLO fuzz.test\r\n");
      await p.until(/\r\n250 [^\r\n]*\r\n/);
      plain.write("STARTTLS\r\n");
      if (await p.until(/\r\n220 [^\r\n]*\r\n$/)) {
        seen.replies.push(p.state.text);
        seen.closedByServer.push(false);
        const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
        const t = collect(secure as unknown as Socket);
        const ok = await new Promise<boolean>((resolve) => {
          secure.once("secureConnect", () => resolve(true));
          secure.once("error", () => resolve(false));
        });
        assert.ok(ok, `seed=${SEED}: the TLS handshake after STARTTLS failed`);
        await send(secure as unknown as Socket, stream(d), d);
        await t.idle(400);
        seen.replies.push(t.state.text);
        seen.closedByServer.push(t.state.closed);
        secure.destroy();
        return seen;
      }
    }
    await send(plain, stream(d), d);
    await p.idle(400);
    seen.replies.push(p.state.text);
    seen.closedByServer.push(p.state.closed);
    return seen;
  } finally {
    plain.destroy();
  }
}

/** Problems with the reply bytes of one connection, or [] when they are well formed. */
function malformed(text: string, closedByServer: boolean): string[] {
  const problems: string[] = [];
  // After the greeting, a 220 is the answer to STARTTLS: TLS records follow
  // (an alert, when the client pipelined plain text instead of a handshake).
  const tls = /\r\n220 [^\r\n]*\r\n/.exec(text);
  if (tls) {
    text = text.slice(0, tls.index + tls[0].length);
    closedByServer = true;
  }
  const lines = text.split("\r\n");
  const rest = lines.pop()!;
  // A connection the server closed ends with a whole line; one we cut may not.
  if (closedByServer && rest !== "") {
    problems.push(`unterminated last line ${JSON.stringify(rest)}`);
  }
  let continued: string | undefined;
  for (const line of lines) {
    if (!/^[2-5]\d\d(?:[ -][^\r\n]*)?$/.test(line)) {
      problems.push(`malformed line ${JSON.stringify(line.slice(0, 200))}`);
      continue;
    }
    const code = line.slice(0, 3);
    if (continued !== undefined && code !== continued) {
      problems.push(`continuation of ${continued} carries ${JSON.stringify(line)}`);
    }
    continued = line[3] === "-" ? code : undefined;
  }
  return problems;
}

/** Every queued or delivered message is whole; returns how many were checked. */
async function checkSpool(server: Server): Promise<number> {
  let checked = 0;
  const queue = join(server.dataDir, "spool", "queue");
  for (const name of await queuedFiles(server.dataDir)) {
    assert.match(name, /^\w+\.(msg|state)$/, `seed=${SEED}: unexpected spool file ${name}`);
    if (!name.endsWith(".msg")) continue;
    const bytes = await readFile(join(queue, name)).catch(() => undefined);
    if (bytes === undefined) continue; // delivered and removed meanwhile
    // The seal line, then the envelope line: the seal matches what follows.
    const raw = bytes.toString("latin1");
    const seal = /^SEALED (\d{16}) ([0-9a-f]{64})\n/.exec(raw);
    assert.ok(seal, `seed=${SEED}: ${name} is not sealed`);
    const sealed = bytes.subarray(seal[0].length);
    assert.equal(Number(seal[1]), sealed.byteLength, `seed=${SEED}: ${name} length`);
    assert.equal(
      createHash("sha256").update(sealed).digest("hex"),
      seal[2],
      `seed=${SEED}: ${name}`,
    );
    const nl = raw.indexOf("\n", seal[0].length);
    const envelope = v.safeParse(EnvelopeSchema, JSON.parse(raw.slice(seal[0].length, nl)));
    assert.ok(envelope.success, `seed=${SEED}: invalid envelope in ${name}`);
    const body = raw.slice(nl + 1).trimStart();
    assert.match(body, /^(?:[^\r\n]+\r\n)*?Received: /, `seed=${SEED}: ${name} has no Received`);
    assert.ok(body.endsWith("\r\n"), `seed=${SEED}: ${name} does not end with CRLF`);
    checked++;
  }
  const mail = join(server.dataDir, "mail");
  for (const domain of await readdir(mail).catch(() => [] as string[])) {
    for (const user of await readdir(join(mail, domain))) {
      const dir = join(mail, domain, user, "new");
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        const text = await readFile(join(dir, name), "latin1");
        assert.match(text, /^Return-Path: /, `seed=${SEED}: ${domain}/${user}/${name}`);
        assert.match(text, /\nReceived: /, `seed=${SEED}: ${domain}/${user}/${name}`);
        assert.ok(text.endsWith("\n"), `seed=${SEED}: ${domain}/${user}/${name} is cut`);
        checked++;
      }
    }
  }
  return checked;
}

describe("SMTP fuzz", () => {
  let server: Server;

  before(async () => {
    server = await startServer({
      config: { "postern.yaml": "hostname: fuzz.postern.test\nsmtp:\n  max_message_size: 1MiB\n" },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  it("a client that goes away in the middle of DATA: nothing kept, logged as interrupted, no error", async () => {
    for (const secure of [false, true]) {
      const plain = connect(server.port, server.host);
      const p = collect(plain);
      let socket: Socket = plain;
      let reader = p;
      assert.ok(await p.until(/^220 .*\r\n/));
      if (secure) {
        plain.write("EHLO client.test\r\nSTARTTLS\r\n");
        assert.ok(await p.until(/\r\n220 [^\r\n]*\r\n$/), p.state.text);
        const tls = tlsConnect({ socket: plain, rejectUnauthorized: false });
        const handshake = await new Promise<unknown>((resolve) => {
          tls.once("secureConnect", () => resolve(true));
          tls.once("error", resolve);
        });
        assert.equal(handshake, true, `the TLS handshake failed: ${handshake}`);
        socket = tls as unknown as Socket;
        reader = collect(socket);
      }
      socket.write("EHLO client.test\r\nMAIL FROM:<gone@example.org>\r\n");
      socket.write("RCPT TO:<alice@localhost>\r\nDATA\r\n");
      assert.ok(await reader.until(/\r\n354 [^\r\n]*\r\n$/), reader.state.text);
      socket.write("Subject: cut\r\n\r\nhalf a message");
      await new Promise((r) => setTimeout(r, 50));
      socket.destroy();
      plain.destroy();
      const line = await server.waitForLog(
        new RegExp(`event=rejected stage=data reason=interrupted .*from=<?gone@example\\.org`),
      );
      assert.match(line, /qid=\w+ /);
      server.mailLog.splice(server.mailLog.indexOf(line), 1);
    }
    await eventually(
      async () => (await partialSpoolFiles(server.dataDir)).length === 0 ? true : undefined,
      10_000,
      "no partial message in the spool",
    );
    assert.doesNotMatch(server.stderr(), /unexpected error/);
  });

  it("random, mutated and pipelined streams, plain and after STARTTLS: well-formed replies, no crash, nothing partial", async () => {
    console.log(`smtp fuzz seed=${SEED} (FUZZ_SEED=${SEED} replays it)`);
    const deadline = Date.now() + BUDGET_MS;
    let next = ONLY ?? 0;
    const last = ONLY ?? MAX_SESSIONS - 1;
    let sessions = 0;
    const worker = async () => {
      while (next <= last && Date.now() < deadline) {
        const n = next++;
        const seen = await session(server, (SEED ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
        sessions++;
        seen.replies.forEach((text, i) => {
          const problems = malformed(text, seen.closedByServer[i]!);
          assert.deepEqual(
            problems,
            [],
            `seed=${SEED} session=${n} (FUZZ_SESSION=${n}), connection ${i} (${
              i === 0 && seen.replies.length > 1 ? "before STARTTLS" : "last"
            }) got:\n${JSON.stringify(text.slice(-3000))}`,
          );
        });
        assert.equal(
          server.child.exitCode,
          null,
          `seed=${SEED} session=${n}: the server exited:\n${server.stderr()}`,
        );
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    assert.ok(sessions > 0);
    console.log(`smtp fuzz: ${sessions} sessions`);

    // A fresh client is served, start to end.
    const fresh = await swaks(server, ["--from", "bob@example.org", "--to", "alice@localhost"]);
    assert.match(fresh.stdout, /250 2\.0\.0 Ok: queued as/, `seed=${SEED}\n${fresh.stdout}`);
    const bad = server.stderr().split("\n").filter((l) =>
      /unexpected error|unhandled|uncaught|panicked/i.test(l)
    );
    assert.deepEqual(bad, [], `seed=${SEED}: errors in the application log`);
    await eventually(
      async () => (await partialSpoolFiles(server.dataDir)).length === 0 ? true : undefined,
      10_000,
      `seed=${SEED}: no partial message in the spool once the sessions closed`,
    );
    assert.ok(await checkSpool(server) > 0, `seed=${SEED}: nothing was queued at all`);
  });
});
