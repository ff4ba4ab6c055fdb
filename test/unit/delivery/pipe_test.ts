import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { deliverToPipe } from "../../../src/delivery/mod.ts";
import { publicText } from "../../../src/outbound/bounce.ts";
import type { DeliveryResult } from "../../../src/queue/mod.ts";
import { chunksOf, makeTempDir, removeDir } from "../helpers.ts";

const ENV = { PATH: "/usr/local/bin:/usr/bin:/bin" };

/** The error text of a result that must not be "sent". */
function errorOf(result: DeliveryResult): string {
  if (result.status === "sent") assert.fail(`expected a failure, got sent: ${result.detail}`);
  return result.error;
}

describe("deliverToPipe", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("postern-pipe-");
  });
  after(async () => {
    await removeDir(dir);
  });

  it("deliverToPipe() returns sent and streams the input when the command exits 0", async () => {
    const out = join(dir, "out.txt");
    const argv = ["/bin/sh", "-c", `cat > '${out}'`];
    const result = await deliverToPipe(argv, ENV, chunksOf("line 1\n", "line 2\n"), 10_000, dir);
    assert.deepEqual(result, { status: "sent", detail: `| /bin/sh -c cat > '${out}'` });
    assert.equal(await readFile(out, "utf8"), "line 1\nline 2\n");
  });

  it("deliverToPipe() streams a large input completely", async () => {
    const out = join(dir, "big.bin");
    const big = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = i % 253;
    const chunks: Uint8Array[] = [];
    for (let off = 0; off < big.length; off += 64 * 1024) {
      chunks.push(big.subarray(off, off + 64 * 1024));
    }
    const result = await deliverToPipe(
      ["/bin/sh", "-c", `cat > '${out}'`],
      ENV,
      chunksOf(...chunks),
      30_000,
      dir,
    );
    assert.equal(result.status, "sent");
    assert.deepEqual(new Uint8Array(await readFile(out)), big);
  });

  it("deliverToPipe() gives the command exactly the given environment and working directory", async () => {
    const out = join(dir, "env.txt");
    const script = `printf '%s|%s|%s|%s' "$SENDER" "$PATH" "\${HOME-unset}" "$(pwd)" > '${out}'`;
    const result = await deliverToPipe(
      ["/bin/sh", "-c", script],
      { ...ENV, SENDER: "a@b.test" },
      chunksOf(""),
      10_000,
      dir,
    );
    assert.equal(result.status, "sent");
    const [sender, path, home, cwd] = (await readFile(out, "utf8")).split("|");
    assert.equal(sender, "a@b.test");
    assert.equal(path, ENV.PATH);
    assert.equal(home, "unset");
    assert.equal(cwd, dir);
  });

  it("deliverToPipe() returns deferred when the command exits 75", async () => {
    const argv = ["/bin/sh", "-c", "cat > /dev/null; echo 'mailbox locked' >&2; exit 75"];
    const result = await deliverToPipe(argv, ENV, chunksOf("x\n"), 10_000, dir);
    assert.equal(result.status, "deferred");
    assert.match(errorOf(result), /exited with status 75: mailbox locked\]$/);
  });

  it("deliverToPipe() returns failed with the last stderr line when the command exits 1", async () => {
    const argv = ["/bin/sh", "-c", "echo first >&2; echo 'no such folder' >&2; exit 1"];
    const result = await deliverToPipe(argv, ENV, chunksOf("x\n"), 10_000, dir);
    assert.equal(result.status, "failed");
    assert.equal(
      errorOf(result),
      "pipe delivery failed (exit status 1) " +
        `[private: pipe "/bin/sh -c echo first >&2; echo 'no such folder' >&2; exit 1" exited with status 1: no such folder]`,
    );
  });

  it("deliverToPipe() keeps the command line and its output out of what a bounce may say", async () => {
    const argv = ["/usr/bin/env", "sh", "-c", "echo 'secret /srv/x [1]' >&2; exit 3"];
    const result = await deliverToPipe(argv, ENV, chunksOf("x\n"), 10_000, dir);
    assert.equal(result.status, "failed");
    const error = errorOf(result);
    // The mail log keeps everything; brackets in the detail cannot end its mark early.
    assert.match(error, /exited with status 3: secret \/srv\/x \(1\)\]$/);
    assert.equal(publicText(error), "pipe delivery failed (exit status 3)");
  });

  it("deliverToPipe() uses the last stdout line when stderr is empty", async () => {
    const result = await deliverToPipe(
      ["/bin/sh", "-c", "echo a; echo b; exit 2"],
      ENV,
      chunksOf(""),
      10_000,
      dir,
    );
    assert.equal(result.status, "failed");
    assert.match(errorOf(result), /status 2: b\]$/);
  });

  it("deliverToPipe() returns deferred when the command does not exist", async () => {
    const result = await deliverToPipe(
      [join(dir, "no-such-command")],
      ENV,
      chunksOf("x\n"),
      10_000,
      dir,
    );
    assert.equal(result.status, "deferred");
  });

  it("deliverToPipe() returns deferred when the command exits 126 or 127", async () => {
    for (const code of [126, 127]) {
      const result = await deliverToPipe(
        ["/bin/sh", "-c", `exit ${code}`],
        ENV,
        chunksOf(""),
        10_000,
        dir,
      );
      assert.equal(result.status, "deferred", `exit ${code}`);
    }
  });

  it("deliverToPipe() returns deferred when the command is killed by a signal", async () => {
    const result = await deliverToPipe(
      ["/bin/sh", "-c", "kill -9 $$"],
      ENV,
      chunksOf(""),
      10_000,
      dir,
    );
    assert.equal(result.status, "deferred");
    assert.match(errorOf(result), /^pipe delivery failed \(killed by a signal\) \[private: /);
  });

  it("deliverToPipe() returns deferred when the command runs past its timeout", async () => {
    const result = await deliverToPipe(["/bin/sleep", "30"], ENV, chunksOf("x\n"), 200, dir);
    assert.deepEqual(result, {
      status: "deferred",
      error:
        'pipe delivery failed (timed out) [private: pipe "/bin/sleep 30" ran longer than 200 ms]',
    });
  });

  it("deliverToPipe() returns sent when the command exits 0 without reading its input", async () => {
    const big = new Uint8Array(2 * 1024 * 1024);
    const result = await deliverToPipe(
      ["/bin/sh", "-c", "exit 0"],
      ENV,
      chunksOf(big, big),
      10_000,
      dir,
    );
    assert.equal(result.status, "sent");
  });
});
