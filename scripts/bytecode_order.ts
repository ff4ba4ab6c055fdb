/**
 * The training run of `scripts/build.sh`: starts a first build of the
 * binary with `BUN_BYTECODE_ORDER_OUT`, so that it records the order in
 * which its functions first run, and takes it through what a server does
 * first: start-up, two SMTP sessions that each deliver a message into a
 * Maildir, and a stop on SIGTERM. The release build then lays its
 * bytecode out in that order (`bun build --bytecode-order`), so the pages
 * that start-up and the first messages touch sit together in the file.
 *
 *   bun scripts/bytecode_order.ts BINARY ORDER_FILE
 *
 * Only loopback is used (port 0, the kernel's choice); everything is
 * bounded by a 30 s deadline. Exits non-zero when no order was written.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import process from "node:process";

const [binary, orderFile] = process.argv.slice(2);
if (!binary || !orderFile) {
  console.error("usage: bun scripts/bytecode_order.ts BINARY ORDER_FILE");
  process.exit(2);
}

const DEADLINE_MS = 30_000;
const MESSAGES = 2;

const work = await mkdtemp(join(tmpdir(), "postern-order-"));
const timer = setTimeout(() => fail(`no result within ${DEADLINE_MS} ms`), DEADLINE_MS);
let child: ReturnType<typeof spawn> | undefined;

function fail(why: string): never {
  console.error(`bytecode order: ${why}`);
  child?.kill("SIGKILL");
  process.exit(1);
}

try {
  const config = join(work, "config");
  await mkdir(join(config, "domains", "example.test"), { recursive: true });
  await writeFile(join(config, "postern.yaml"), "hostname: order.test\n");
  await writeFile(join(config, "domains", "example.test", "users"), "user\n");
  await rm(orderFile, { force: true });

  const server = spawn(resolvePath(binary), [
    "serve",
    "--config",
    config,
    "--data",
    join(work, "data"),
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
  ], {
    cwd: work,
    env: { ...process.env, BUN_BYTECODE_ORDER_OUT: resolvePath(orderFile) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child = server;
  server.on("error", (err) => fail(`cannot start ${binary}: ${err.message}`));
  const exited = new Promise<number | null>((resolve) => server.on("exit", resolve));
  let listening = false;
  const port = await new Promise<number>((resolve) => {
    let seen = "";
    server.stdout!.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      const m = /event=listening addr=127\.0\.0\.1:(\d+)/.exec(seen);
      if (m && !listening) {
        listening = true;
        resolve(Number(m[1]));
      }
    });
    exited.then((code) => {
      if (!listening) fail(`the server exited (${code}) before listening`);
    });
  });

  for (let i = 0; i < MESSAGES; i++) await sendOne(port, i);
  const maildir = join(work, "data", "mail", "example.test", "user", "new");
  while ((await readdir(maildir).catch(() => [])).length < MESSAGES) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  server.kill("SIGTERM");
  const code = await exited;
  if (code !== 0) fail(`the server exited with ${code} on SIGTERM`);
  const { size } = await stat(orderFile).catch(() => fail(`${orderFile} was not written`));
  if (size === 0) fail(`${orderFile} is empty`);
  console.log(`bytecode order: ${orderFile} (${size} bytes)`);
} finally {
  clearTimeout(timer);
  await rm(work, { recursive: true, force: true });
}

/** One SMTP session: each command waits for the reply to the one before. */
async function sendOne(port: number, n: number): Promise<void> {
  const socket = connect(port, "127.0.0.1");
  let buffered = "";
  const waiters: Array<(line: string) => void> = [];
  socket.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    // A reply's last line has a space after the code (RFC 5321 section 4.2.1).
    let m: RegExpExecArray | null;
    while ((m = /^(\d{3}) [^\r\n]*\r?\n/m.exec(buffered))) {
      buffered = buffered.slice(m.index + m[0].length);
      waiters.shift()?.(m[1]!);
    }
  });
  socket.on("error", (err) => fail(`SMTP session: ${err.message}`));
  const reply = () => new Promise<string>((resolve) => waiters.push(resolve));
  const expect = async (command: string | undefined, code: string) => {
    const answer = reply();
    if (command !== undefined) socket.write(command + "\r\n");
    const got = await answer;
    if (got !== code) fail(`${command ?? "greeting"}: ${got}, expected ${code}`);
  };
  await expect(undefined, "220");
  await expect("EHLO client.test", "250");
  await expect("MAIL FROM:<sender@client.test>", "250");
  await expect("RCPT TO:<user@example.test>", "250");
  await expect("DATA", "354");
  await expect(`Subject: order ${n}\r\n\r\nbody ${n}\r\n.`, "250");
  await expect("QUIT", "221");
  socket.end();
}
