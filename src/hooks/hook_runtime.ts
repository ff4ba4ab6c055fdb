/**
 * The deno that the release binary carries for TypeScript hooks. The build
 * embeds it gzipped, with a manifest of its version, size and SHA-256
 * (`scripts/build.sh`); on first use it is extracted to
 * `<data>/runtime/deno-<version>`.
 *
 * Safety and speed:
 * - Nothing embedded is read unless a TypeScript hook needs deno.
 * - The first use in a process hashes the extracted copy in full (about
 *   0.1 s for 96 MB) and replaces it when it differs: a damaged or altered
 *   copy is never run. Later uses in the same process (a hook's workers
 *   installed again after a change to the hook or its settings) compare the
 *   file's identity (inode, size, mtime, ctime) with the one that was
 *   hashed; any write changes the ctime, which no program can set back, so
 *   an altered copy is hashed (and replaced) again before it runs. A worker
 *   that restarts within its pool (after a crash) uses the path as it is.
 * - Extraction writes a temporary file of a unique name, checks its hash,
 *   fsyncs it and renames it into place, then fsyncs the folder. Two
 *   processes that share a data folder each rename a complete, checked copy;
 *   whichever rename comes last wins, and a process whose own copy was
 *   replaced by another's hashes the one in place before using it.
 * - The folder is 0700 and the copy 0500: only Postern's own user (or
 *   root) can change it between the check and the start of a worker.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream as NodeWebStream } from "node:stream/web";
import { createGunzip } from "node:zlib";
import * as v from "valibot";
import type { Logger } from "../log/mod.ts";
import { embeddedFile, spawnProcess } from "../runtime/mod.ts";
import type { FoundDeno } from "./find_deno.ts";

/** The name of the embedded, gzipped deno in the binary. */
export const RUNTIME_ASSET = "hook-deno.gz";
/** The name of the embedded manifest that describes it. */
export const MANIFEST_ASSET = "hook-runtime.manifest";

/** What the build recorded about the embedded deno. */
export const RuntimeManifestSchema = v.strictObject({
  /** The deno version, from the lockfile (`2.9.6`). */
  version: v.pipe(v.string(), v.regex(/^\d+\.\d+\.\d+$/, "must be a version such as 2.9.6")),
  /** SHA-256 of the executable (not of the gzip), lower-case hex. */
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits")),
  /** Size of the executable in bytes. */
  size: v.pipe(v.number(), v.safeInteger(), v.minValue(1)),
  /** The npm package it came from (`@deno/linux-x64-glibc`). */
  package: v.pipe(v.string(), v.minLength(1)),
});

/** What the build recorded about the embedded deno. */
export type RuntimeManifest = v.InferOutput<typeof RuntimeManifestSchema>;

/** An embedded deno: its manifest and its gzipped bytes, read only on demand. */
export interface RuntimeSource {
  manifest: RuntimeManifest;
  /** The gzipped executable. */
  open(): ReadableStream<Uint8Array>;
}

/**
 * The deno embedded in the running binary, or undefined in a slim build or
 * a source run. Reads only the small manifest.
 *
 * @throws {Error} when the manifest is there but invalid (a broken build).
 */
export async function embeddedRuntime(): Promise<RuntimeSource | undefined> {
  const manifestFile = embeddedFile(MANIFEST_ASSET);
  const gz = embeddedFile(RUNTIME_ASSET);
  if (manifestFile === undefined || gz === undefined) return undefined;
  const parsed = v.safeParse(RuntimeManifestSchema, JSON.parse(await manifestFile.text()));
  if (!parsed.success) {
    throw new Error(
      `Cannot use the embedded deno: its manifest is invalid (${
        parsed.issues.map((i) => i.message).join("; ")
      })`,
    );
  }
  return { manifest: parsed.output, open: () => gz.stream() };
}

/** What {@linkcode prepareRuntime} did. */
export interface PrepareResult {
  path: string;
  /** `verified`: the copy in place was good; `extracted`: there was none; `replaced`: it was bad. */
  action: "verified" | "extracted" | "replaced";
  /** How long it took. */
  ms: number;
}

/** The identity of a file as stat shows it; a write changes it. */
type Identity = string;

/**
 * The embedded deno of one data folder: where it goes and a `prepare()`
 * that makes sure a checked copy is there before each use.
 */
export class EmbeddedDeno {
  /** Where the executable is (once prepared). */
  readonly path: string;
  /** Its version, from the build's manifest. */
  readonly version: string;
  readonly #source: RuntimeSource;
  readonly #dir: string;
  readonly #logger: Logger | undefined;
  #checked: Identity | undefined;
  #inFlight: Promise<PrepareResult> | undefined;

  /** The embedded deno of `source`, extracted under `<dataDir>/runtime`. */
  constructor(source: RuntimeSource, dataDir: string, logger?: Logger) {
    this.#source = source;
    this.#dir = join(dataDir, "runtime");
    this.#logger = logger;
    this.version = source.manifest.version;
    this.path = runtimePath(this.#dir, source.manifest);
  }

  /**
   * Makes sure the copy at {@linkcode path} is the embedded one: hashes it
   * on the first call (and whenever the file changed since), extracts it
   * when missing or different. Calls at once share one run.
   *
   * @throws {Error} when it cannot be written or the embedded bytes are bad.
   */
  prepare(): Promise<PrepareResult> {
    this.#inFlight ??= this.#prepare().finally(() => this.#inFlight = undefined);
    return this.#inFlight;
  }

  async #prepare(): Promise<PrepareResult> {
    const started = performance.now();
    if (this.#checked !== undefined && this.#checked === await identity(this.path)) {
      return { path: this.path, action: "verified", ms: performance.now() - started };
    }
    const result = await prepareRuntime(this.#source, this.#dir);
    this.#checked = await identity(this.path);
    if (result.action === "replaced") {
      this.#logger?.warn("hook runtime copy was damaged or altered; replaced", {
        path: result.path,
        version: this.version,
      });
    } else if (result.action === "extracted") {
      this.#logger?.info("hook runtime extracted", {
        path: result.path,
        version: this.version,
        ms: Math.round(result.ms),
      });
    }
    return result;
  }
}

/** Where `manifest`'s deno goes in `dir`. */
export function runtimePath(dir: string, manifest: RuntimeManifest): string {
  return join(dir, `deno-${manifest.version}`);
}

/** Temporary files of an extraction that are older than this were left by a crash. */
const STALE_TEMP_MS = 10 * 60_000;
/** Renames by other processes that a process waits out before giving up. */
const MAX_ROUNDS = 5;

/**
 * Makes `<dir>/deno-<version>` a checked copy of `source`: keeps a copy that
 * hashes right, else extracts atomically (unique temp file, hash, fsync,
 * rename, fsync of the folder) and checks what is in place afterwards.
 *
 * @throws {Error} when the folder cannot be written or the embedded bytes
 * do not match the manifest.
 */
export async function prepareRuntime(source: RuntimeSource, dir: string): Promise<PrepareResult> {
  const started = performance.now();
  const path = runtimePath(dir, source.manifest);
  const done = (action: PrepareResult["action"]) => ({
    path,
    action,
    ms: performance.now() - started,
  });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing = await stat(path).catch(() => undefined);
  if (existing !== undefined && await matches(path, source.manifest)) return done("verified");
  await removeStaleTemps(dir);
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const ours = await extractTo(source, dir);
    await rename(ours.temp, path).catch(async (err) => {
      await rm(ours.temp, { force: true });
      throw err;
    });
    await syncDir(dir);
    // Another process may have renamed its own copy over ours since: that
    // one is checked before it is used.
    const inPlace = await stat(path).catch(() => undefined);
    if (inPlace?.ino === ours.ino && inPlace.dev === ours.dev) {
      return done(existing === undefined ? "extracted" : "replaced");
    }
    if (inPlace !== undefined && await matches(path, source.manifest)) {
      return done(existing === undefined ? "extracted" : "replaced");
    }
  }
  throw new Error(`Cannot extract deno to "${path}": the copy in place kept changing`);
}

/** Whether the file at `path` is an executable of the manifest's size and hash. */
export async function matches(path: string, manifest: RuntimeManifest): Promise<boolean> {
  let file;
  try {
    file = await open(path, "r");
  } catch {
    return false;
  }
  try {
    const info = await file.stat();
    if (!info.isFile() || info.size !== manifest.size || (info.mode & 0o100) === 0) return false;
    const hash = createHash("sha256");
    const buffer = new Uint8Array(1 << 20);
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
    return hash.digest("hex") === manifest.sha256;
  } finally {
    await file.close();
  }
}

/** Writes the gunzipped source to a new temporary file in `dir` and checks it. */
async function extractTo(
  source: RuntimeSource,
  dir: string,
): Promise<{ temp: string; ino: number; dev: number }> {
  const { manifest } = source;
  const temp = join(dir, `.deno-${manifest.version}.${randomBytes(8).toString("hex")}.tmp`);
  // "wx": a name nobody else has; 0600 until it is complete and checked.
  const file = await open(temp, "wx", 0o600);
  try {
    const hash = createHash("sha256");
    let size = 0;
    const gunzipped = Readable.fromWeb(source.open() as NodeWebStream<Uint8Array>).pipe(
      createGunzip(),
    );
    for await (const chunk of gunzipped as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > manifest.size) break;
      hash.update(chunk);
      await file.write(chunk);
    }
    gunzipped.destroy();
    if (size !== manifest.size || hash.digest("hex") !== manifest.sha256) {
      throw new Error(
        `Cannot extract deno ${manifest.version}: the embedded copy does not match the hash ` +
          `recorded at build time; the binary is damaged`,
      );
    }
    await file.sync();
    await chmod(temp, 0o500);
    const info = await file.stat();
    await file.close();
    return { temp, ino: info.ino, dev: info.dev };
  } catch (err) {
    await file.close().catch(() => {});
    await rm(temp, { force: true });
    throw err;
  }
}

async function identity(path: string): Promise<Identity | undefined> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return undefined;
  return `${info.dev}:${info.ino}:${info.size}:${info.mode}:${info.mtimeMs}:${info.ctimeMs}`;
}

/** Makes a rename in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch {
    // Some file systems cannot fsync a folder; the rename stands anyway.
  } finally {
    await handle.close();
  }
}

/** Removes temporary files that a crashed extraction left behind. */
async function removeStaleTemps(dir: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(".deno-") || !name.endsWith(".tmp")) continue;
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (info !== undefined && now - info.mtimeMs > STALE_TEMP_MS) {
      await rm(join(dir, name), { force: true });
    }
  }
}

/** The hook runtime as `/status` and the start-up log show it. */
export interface HookRuntimeStatus {
  /** Version of the deno the binary carries; null in a slim build or a source run. */
  embedded: string | null;
  /** The deno that module hooks run under; null until a TypeScript hook needs one. */
  deno: { path: string; source: FoundDeno["source"]; version: string | null } | null;
}

/** One line for logs and `postern version`: `deno 2.9.6 (embedded)`. */
export function describeHookRuntime(status: HookRuntimeStatus): string {
  const inUse = status.deno;
  if (inUse === null || inUse.source === "embedded") {
    return status.embedded === null
      ? "none embedded (hooks.deno, DENO_BIN or deno on PATH)"
      : `deno ${status.embedded} (embedded)`;
  }
  return `deno ${inUse.version ?? "(version unknown)"} (${inUse.source}: ${inUse.path})`;
}

/** What `deno --version` says of the deno at `path`, or null when it says nothing usable. */
export async function denoVersion(path: string): Promise<string | null> {
  const result = await spawnProcess({
    argv: [path, "--version"],
    env: {},
    stdin: (async function* () {})(),
    timeoutMs: 10_000,
  });
  return /^deno (\d+\.\d+\.\d+\S*)/.exec(result.stdout)?.[1] ?? null;
}

/**
 * What `/status` and the start-up log say of the hook runtime: the deno the
 * binary carries, and the one that module hooks run under (`inUse`). A deno
 * from elsewhere is asked its version once, here, when it is already in use.
 */
export async function hookRuntimeReporter(
  inUse: () => FoundDeno | undefined,
  embedded: EmbeddedDeno | undefined,
): Promise<() => HookRuntimeStatus> {
  const atStart = inUse();
  const external = atStart?.source === "embedded" ? undefined : atStart;
  const externalVersion = external && await denoVersion(external.path);
  return () => {
    const deno = inUse();
    const version = deno?.source === "embedded"
      ? embedded?.version ?? null
      : deno !== undefined && deno.path === external?.path
      ? externalVersion ?? null
      : null;
    return {
      embedded: embedded?.version ?? null,
      deno: deno === undefined ? null : { path: deno.path, source: deno.source, version },
    };
  };
}
