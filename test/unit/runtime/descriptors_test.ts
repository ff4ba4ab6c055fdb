/**
 * A child started by Postern holds only its own pipes, whatever Postern
 * inherited: the test starts a small program on each runtime, from bash
 * holding extra descriptors without close-on-exec (a file at 5, a pipe at
 * 9, a socket pair end at 47, a file at 200), and has it start children
 * through startChild() and spawnProcess() that list their descriptors.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { sealDescriptors } from "../../../src/runtime/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

const RUNTIME = resolve(fileURLToPath(import.meta.url), "../../../../src/runtime/mod.ts");

const F_GETFD = 1;
const FD_CLOEXEC = 1;

/** The part of Deno's FFI the test uses (typed here: the tests type-check against Node's types). */
interface DenoFfi {
  dlopen(path: string, symbols: Record<string, { parameters: string[]; result: string }>): {
    symbols: {
      open: (path: Uint8Array, flags: number) => number;
      fcntl: (fd: number, command: number, argument: number) => number;
      close: (fd: number) => number;
    };
    close(): void;
  };
}

/** Lists the descriptors of a child (the shell's own: $$) through both spawn paths. */
const PROGRAM = `
import { spawnProcess, startChild } from ${JSON.stringify(RUNTIME)};
// ls lists the descriptors of the shell ($$), which opens none of its own
// (a second command keeps the shell from becoming ls).
const list = "ls -l /proc/$$/fd; exit 0";
const child = startChild({ argv: ["/bin/sh", "-c", list], env: { PATH: "/usr/bin:/bin" } });
let out = "";
child.onStdout((chunk) => out += new TextDecoder().decode(chunk));
await new Promise((r) => child.onExit(r));
const once = await spawnProcess({
  argv: ["/bin/sh", "-c", list],
  env: { PATH: "/usr/bin:/bin" },
  stdin: (async function* () {})(),
  timeoutMs: 10000,
});
const fds = (text) => text.split("\\n").map((l) => / (\\d+) -> /.exec(l)?.[1]).filter(Boolean).join(" ");
console.log(JSON.stringify({ startChild: fds(out), spawnProcess: fds(once.stdout) }));
`;

/** bash opens the extra descriptors, then runs the program in their presence. */
function runWithExtraFds(argv: string[], dir: string): Promise<string> {
  const script = `exec 5<>"${dir}/five" 9< <(:) 47<>/dev/null 200>>"${dir}/two-hundred"; ` +
    `exec "$@"`;
  return new Promise((res, rej) => {
    execFile(
      "bash",
      ["-c", script, "bash", ...argv],
      { timeout: 30_000 },
      (err, stdout, stderr) => {
        if (err) rej(new Error(`${err.message}\n${stderr}`));
        else res(stdout);
      },
    );
  });
}

describe("descriptors", () => {
  let dir: string;
  let program: string;
  before(async () => {
    dir = await makeTempDir("postern-fds-");
    program = join(dir, "program.ts");
    await writeFile(program, PROGRAM);
  });
  after(async () => {
    await removeDir(dir);
  });

  const runtimes: Array<[string, string[]]> = [["deno", [
    "Deno" in globalThis ? process.execPath : "deno",
    "run",
    "-A",
  ]]];
  if (!("Deno" in globalThis)) runtimes.push(["bun", [process.execPath, "run"]]);

  for (const [name, command] of runtimes) {
    it(`children started under ${name} hold only their own pipes, not Postern's inherited descriptors`, async () => {
      const out = await runWithExtraFds([...command, program], dir);
      const listed = JSON.parse(out.trim().split("\n").pop()!);
      assert.deepEqual(listed, { startChild: "0 1 2 3", spawnProcess: "0 1 2" });
    });
  }

  if ("Deno" in globalThis) {
    it("sealDescriptors() marks a descriptor without close-on-exec, and says so once", () => {
      // A descriptor as Postern may inherit one: opened with libc's open(2),
      // which sets no close-on-exec (deno's own APIs always do).
      const libc = (globalThis as unknown as { Deno: DenoFfi }).Deno.dlopen("libc.so.6", {
        open: { parameters: ["buffer", "i32"], result: "i32" },
        fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
        close: { parameters: ["i32"], result: "i32" },
      });
      const { open, fcntl, close } = libc.symbols;
      const cloexec = (fd: number) => (fcntl(fd, F_GETFD, 0) & FD_CLOEXEC) !== 0;
      const fd = open(new TextEncoder().encode("/dev/null\0"), 0);
      try {
        assert.ok(fd > 2, `open(2) gave ${fd}`);
        assert.equal(cloexec(fd), false, "the test's descriptor starts without close-on-exec");
        const result = sealDescriptors();
        assert.equal(result.error, undefined);
        assert.ok(result.marked.includes(fd), `${fd} not in ${JSON.stringify(result.marked)}`);
        assert.equal(cloexec(fd), true, "marked close-on-exec");
        // Already marked: the next call leaves it alone.
        assert.ok(!sealDescriptors().marked.includes(fd));
      } finally {
        close(fd);
        libc.close();
      }
    });
  } else {
    it("sealDescriptors() does nothing under Bun, which closes them itself when it spawns", () => {
      assert.deepEqual(sealDescriptors(), { marked: [] });
    });
  }
});
