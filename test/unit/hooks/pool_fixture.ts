/**
 * The setting the module-hook unit tests share: deno found as Postern finds
 * it, a temporary folder with the worker bootstrap and a hooks folder, and
 * the pools started there (one hook module each), all ended after a test.
 *
 * @module
 */

import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { findDeno } from "../../../src/hooks/find_deno.ts";
import { ModulePool, type ModulePoolOptions } from "../../../src/hooks/module_pool.ts";
import { NO_GRANTS } from "../../../src/hooks/sandbox.ts";
import { WORKER_SOURCE } from "../../../src/hooks/worker_source.ts";
import { Logger } from "../../../src/log/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

/** Polls `condition` every 10 ms; fails the test after `limitMs`. */
export async function eventually(
  condition: () => boolean,
  what: string,
  limitMs = 8000,
): Promise<void> {
  for (let waited = 0; waited <= limitMs; waited += 10) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A hooks folder with the worker bootstrap beside it, and the pools started in it. */
export class PoolFixture {
  /** The temporary folder (the pools' working directory). */
  readonly root: string;
  /** Where the hook modules are written. */
  readonly hooksDir: string;
  readonly #deno: string;
  readonly #bootstrap: string;
  #pools: ModulePool[] = [];
  #counter = 0;

  private constructor(root: string, deno: string) {
    this.root = root;
    this.hooksDir = join(root, "hooks");
    this.#bootstrap = join(root, "run", "hook_worker.js");
    this.#deno = deno;
  }

  /** Finds deno and writes the bootstrap into a new temporary folder named after `prefix`. */
  static async create(prefix: string): Promise<PoolFixture> {
    const found = findDeno({ env: (n) => process.env[n], execPath: process.execPath });
    assert.ok(found, "these tests need deno on PATH, in DENO_BIN, or as the running runtime");
    const fixture = new PoolFixture(await makeTempDir(prefix), found.path);
    await mkdir(fixture.hooksDir);
    await mkdir(join(fixture.root, "run"));
    await writeFile(fixture.#bootstrap, WORKER_SOURCE);
    return fixture;
  }

  /**
   * Writes `source` as a fresh hook module and starts a pool for it: one
   * worker, no grants, 128 MiB, a 15 s timeout and the default output
   * budget, logging nowhere, unless `overrides` say otherwise.
   */
  async start(source: string, overrides: Partial<ModulePoolOptions> = {}): Promise<ModulePool> {
    const name = `hook-${++this.#counter}`;
    const entry = join(this.hooksDir, `${name}.ts`);
    await writeFile(entry, source);
    const pool = new ModulePool({
      name,
      hooksDir: this.hooksDir,
      entry,
      deno: this.#deno,
      bootstrap: this.#bootstrap,
      grants: NO_GRANTS,
      maxMemoryBytes: 128 * 1024 * 1024,
      outputLimits: { linesPerSecond: 200, bytesPerSecond: 64 * 1024 },
      workers: 1,
      timeoutMs: 15_000,
      cwd: this.root,
      env: (n) => process.env[n],
      logger: new Logger("error", () => {}),
      ...overrides,
    });
    this.#pools.push(pool);
    return pool;
  }

  /** Ends every pool started so far (after each test). */
  killAll(): void {
    for (const pool of this.#pools) pool.kill();
    this.#pools = [];
  }

  /** Removes the temporary folder (after the last test). */
  async remove(): Promise<void> {
    this.killAll();
    await removeDir(this.root);
  }
}
