/**
 * Configuration directories for the loader's unit tests: one temporary root
 * per `describe`, a fresh folder per call, and the ConfigError a load gives.
 *
 * @module
 */

import { after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../../src/config/mod.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

/**
 * Registers a temporary root for the enclosing `describe` (made before its
 * tests, removed after them) and returns a maker of configuration
 * directories holding the given files.
 */
export function configDirs(prefix: string): (files: Record<string, string>) => Promise<string> {
  let root: string;
  let n = 0;
  before(async () => {
    root = await makeTempDir(prefix);
  });
  after(async () => {
    await removeDir(root);
  });
  return async (files) => {
    const dir = join(root, `c${n++}`);
    await mkdir(dir);
    await writeTree(dir, files);
    return dir;
  };
}

/** The ConfigError that loading `configDir` gives; fails the test if it loads. */
export async function configError(configDir: string, dataDir?: string): Promise<ConfigError> {
  try {
    await loadConfig({ configDir, dataDir });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected loadConfig() to throw a ConfigError");
}
