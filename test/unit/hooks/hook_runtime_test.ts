import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, open, readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import {
  denoVersion,
  describeHookRuntime,
  EmbeddedDeno,
  embeddedRuntime,
  hookRuntimeReporter,
  prepareRuntime,
  type RuntimeManifest,
  type RuntimeSource,
} from "../../../src/hooks/hook_runtime.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

/** A stand-in for deno: a few MB, so that extraction takes many chunks. */
const PAYLOAD = new Uint8Array(
  Buffer.concat([Buffer.from("#!/bin/sh\necho deno 9.8.7\n"), randomBytes(3 << 20)]),
);
const GZ = gzipSync(PAYLOAD, { level: 1 });
const MANIFEST: RuntimeManifest = {
  version: "9.8.7",
  sha256: createHash("sha256").update(PAYLOAD).digest("hex"),
  size: PAYLOAD.byteLength,
  package: "@deno/test-platform",
};
const SOURCE: RuntimeSource = { manifest: MANIFEST, open: () => new Blob([GZ]).stream() };

async function sameAsPayload(path: string): Promise<boolean> {
  return Buffer.compare(await readFile(path), Buffer.from(PAYLOAD)) === 0;
}

async function tempsIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith(".tmp"));
}

/** Overwrites one byte of `path` in place, keeping its size. */
async function flipByte(path: string, at: number): Promise<void> {
  await chmod(path, 0o700);
  const file = await open(path, "r+");
  const one = new Uint8Array(1);
  await file.read(one, 0, 1, at);
  one[0] = one[0]! ^ 0xff;
  await file.write(one, 0, 1, at);
  await file.close();
  await chmod(path, 0o500);
}

describe("hook runtime extraction", () => {
  let root: string;
  let n = 0;
  const fresh = () => join(root, `data-${n++}`);
  before(async () => {
    root = await makeTempDir("postern-hook-runtime-");
  });
  after(async () => {
    await removeDir(root);
  });

  it("prepareRuntime() extracts to runtime/deno-<version>, 0500 in a 0700 folder, leaving no temp file", async () => {
    const dir = join(fresh(), "runtime");
    const result = await prepareRuntime(SOURCE, dir);
    assert.equal(result.action, "extracted");
    assert.equal(result.path, join(dir, "deno-9.8.7"));
    assert.ok(await sameAsPayload(result.path));
    assert.equal((await stat(result.path)).mode & 0o777, 0o500);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.deepEqual(await readdir(dir), ["deno-9.8.7"]);
  });

  it("prepareRuntime() keeps a good copy: hashed, not written again", async () => {
    const dir = join(fresh(), "runtime");
    const first = await prepareRuntime(SOURCE, dir);
    const before = await stat(first.path);
    const second = await prepareRuntime(SOURCE, dir);
    assert.equal(second.action, "verified");
    const after = await stat(second.path);
    assert.equal(after.ino, before.ino);
    assert.equal(after.mtimeMs, before.mtimeMs);
  });

  it("prepareRuntime() replaces a copy with one byte changed, a short copy and a copy that is not executable", async () => {
    const dir = join(fresh(), "runtime");
    const { path } = await prepareRuntime(SOURCE, dir);
    const damages: Array<() => Promise<void>> = [
      () => flipByte(path, PAYLOAD.byteLength - 10),
      async () => {
        await chmod(path, 0o700);
        await writeFile(path, PAYLOAD.subarray(0, 1000));
      },
      () => chmod(path, 0o400),
    ];
    for (const damage of damages) {
      await damage();
      assert.equal(await sameAsPayload(path) && ((await stat(path)).mode & 0o100) !== 0, false);
      const result = await prepareRuntime(SOURCE, dir);
      assert.equal(result.action, "replaced");
      assert.ok(await sameAsPayload(path));
      assert.equal((await stat(path)).mode & 0o777, 0o500);
    }
    assert.deepEqual(await tempsIn(dir), []);
  });

  it("prepareRuntime() refuses embedded bytes that do not match the manifest, and leaves nothing", async () => {
    const dir = join(fresh(), "runtime");
    const wrong: RuntimeSource = {
      manifest: { ...MANIFEST, sha256: "0".repeat(64) },
      open: SOURCE.open,
    };
    await assert.rejects(
      prepareRuntime(wrong, dir),
      /does not match the hash recorded at build time/,
    );
    const short: RuntimeSource = {
      manifest: { ...MANIFEST, size: MANIFEST.size + 1 },
      open: SOURCE.open,
    };
    await assert.rejects(prepareRuntime(short, dir), /does not match/);
    assert.deepEqual(await readdir(dir), []);
  });

  it("prepareRuntime() removes temp files of a crashed extraction that are older than 10 minutes, not newer ones", async () => {
    const dir = join(fresh(), "runtime");
    await prepareRuntime(SOURCE, dir);
    const old = join(dir, ".deno-9.8.7.0123456789abcdef.tmp");
    const young = join(dir, ".deno-9.8.7.fedcba9876543210.tmp");
    await writeFile(old, "partial");
    await writeFile(young, "partial");
    const longAgo = new Date(Date.now() - 11 * 60_000);
    await utimes(old, longAgo, longAgo);
    await flipByte(join(dir, "deno-9.8.7"), 100);
    assert.equal((await prepareRuntime(SOURCE, dir)).action, "replaced");
    assert.deepEqual((await tempsIn(dir)).sort(), [".deno-9.8.7.fedcba9876543210.tmp"]);
  });

  it("EmbeddedDeno records the version and path, and hashes again once the copy changed after a check", async () => {
    const data = fresh();
    const deno = new EmbeddedDeno(SOURCE, data);
    assert.equal(deno.version, "9.8.7");
    assert.equal(deno.path, join(data, "runtime", "deno-9.8.7"));
    assert.equal((await deno.prepare()).action, "extracted");
    assert.equal((await deno.prepare()).action, "verified");
    await flipByte(deno.path, 5);
    assert.equal((await deno.prepare()).action, "replaced");
    assert.ok(await sameAsPayload(deno.path));
  });

  it("EmbeddedDeno: a new process (a new instance) hashes the copy in full, so damage that kept the file's times is found", async () => {
    const data = fresh();
    const first = new EmbeddedDeno(SOURCE, data);
    await first.prepare();
    const { atime, mtime } = await stat(first.path);
    await flipByte(first.path, 1234);
    await utimes(first.path, atime, mtime);
    const restarted = new EmbeddedDeno(SOURCE, data);
    assert.equal((await restarted.prepare()).action, "replaced");
    assert.ok(await sameAsPayload(restarted.path));
  });

  it("two extractions at once into one folder (two instances in one process) both end with a good copy", async () => {
    const data = fresh();
    const results = await Promise.all([
      new EmbeddedDeno(SOURCE, data).prepare(),
      new EmbeddedDeno(SOURCE, data).prepare(),
    ]);
    for (const result of results) assert.notEqual(result.action, "replaced");
    assert.ok(await sameAsPayload(join(data, "runtime", "deno-9.8.7")));
    assert.deepEqual(await readdir(join(data, "runtime")), ["deno-9.8.7"]);
  });

  it("two processes extracting into one folder at once both succeed, leaving one good copy", async () => {
    const dir = join(fresh(), "runtime");
    const gzPath = join(root, `payload-${n}.gz`);
    const signals = join(root, `signals-${n}`);
    await mkdir(signals);
    await writeFile(gzPath, GZ);
    const script = fileURLToPath(new URL("../../support/extract_runtime.ts", import.meta.url));
    const runtimeArgs = "Bun" in globalThis ? ["run", script] : ["run", "-A", script];
    const child = () =>
      new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          [...runtimeArgs, dir, gzPath, JSON.stringify(MANIFEST), signals],
          { timeout: 90_000 },
          (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
    /** Waits (bounded) until `count` children have stopped half way. */
    const underway = async (count: number) => {
      const stopped = async () =>
        (await readdir(signals)).filter((f) => f.startsWith("extracting-")).length;
      for (let i = 0; i < 6000 && await stopped() < count; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(await stopped(), count, `${count} extraction(s) under way`);
    };
    // Each child stops half way through its extraction and says so. The
    // second starts once the first has stopped, so it finds the first one's
    // temporary file (which it must leave alone) and no copy in place; then
    // both are under way at once, and finish together.
    const first = child();
    first.catch(() => {}); // observed below; a failure is not unhandled meanwhile
    await underway(1);
    const second = child();
    second.catch(() => {});
    await underway(2);
    assert.equal((await tempsIn(dir)).length, 2, (await readdir(dir)).join(" "));
    const both = Promise.all([first, second]);
    await writeFile(join(signals, "go"), "");
    const outputs = await both;
    for (const output of outputs) {
      const result = JSON.parse(output) as { path: string; action: string };
      assert.equal(result.path, join(dir, "deno-9.8.7"));
      // Both extracted: each renamed its own copy into place, the later
      // one over the earlier, and each checked what it found there.
      assert.equal(result.action, "extracted");
    }
    assert.ok(await sameAsPayload(join(dir, "deno-9.8.7")));
    assert.deepEqual(await readdir(dir), ["deno-9.8.7"]);
  });
});

describe("hook runtime reporting", () => {
  let root: string;
  before(async () => {
    root = await makeTempDir("postern-hook-runtime-report-");
  });
  after(async () => {
    await removeDir(root);
  });

  it("describeHookRuntime() names the embedded deno until another one is in use", () => {
    assert.equal(describeHookRuntime({ embedded: "2.9.6", deno: null }), "deno 2.9.6 (embedded)");
    assert.equal(
      describeHookRuntime({
        embedded: "2.9.6",
        deno: { path: "/data/runtime/deno-2.9.6", source: "embedded", version: "2.9.6" },
      }),
      "deno 2.9.6 (embedded)",
    );
    assert.equal(
      describeHookRuntime({
        embedded: "2.9.6",
        deno: { path: "/opt/deno", source: "DENO_BIN", version: "2.5.0" },
      }),
      "deno 2.5.0 (DENO_BIN: /opt/deno)",
    );
    assert.equal(
      describeHookRuntime({ embedded: null, deno: null }),
      "none embedded (hooks.deno, DENO_BIN or deno on PATH)",
    );
  });

  it("hookRuntimeReporter() reports the embedded deno, and the version of a deno from elsewhere asked once at start", async () => {
    const dir = join(root, "counting-deno");
    await mkdir(dir, { recursive: true });
    const asked = join(dir, "asked");
    await writeFile(
      join(dir, "deno"),
      `#!/bin/sh\necho x >> ${asked}\necho 'deno 2.5.1 (stable)'\n`,
    );
    await chmod(join(dir, "deno"), 0o755);
    const fromEnv = { path: join(dir, "deno"), source: "DENO_BIN" as const };
    const external = await hookRuntimeReporter(() => fromEnv, undefined);
    assert.deepEqual(external(), {
      embedded: null,
      deno: { path: join(dir, "deno"), source: "DENO_BIN", version: "2.5.1" },
    });
    external();
    assert.equal(await readFile(asked, "utf8"), "x\n");

    const deno = new EmbeddedDeno(SOURCE, join(root, "reporter-data"));
    const current: { inUse?: { path: string; source: "embedded" } } = {};
    const report = await hookRuntimeReporter(() => current.inUse, deno);
    assert.deepEqual(report(), { embedded: "9.8.7", deno: null });
    current.inUse = { path: deno.path, source: "embedded" };
    assert.deepEqual(report(), {
      embedded: "9.8.7",
      deno: { path: deno.path, source: "embedded", version: "9.8.7" },
    });
  });

  it("embeddedRuntime() finds nothing in a source run", async () => {
    assert.equal(await embeddedRuntime(), undefined);
  });

  it("denoVersion() reads what deno --version says, and null from a program that is not deno", async () => {
    const dir = join(root, "fake-deno");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "deno"), "#!/bin/sh\necho 'deno 1.2.3 (stable)'\necho 'v8 1'\n");
    await chmod(join(dir, "deno"), 0o755);
    assert.equal(await denoVersion(join(dir, "deno")), "1.2.3");
    assert.equal(await denoVersion(join(dir, "missing")), null);
  });
});
