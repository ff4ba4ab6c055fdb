/**
 * Review findings on the spare spool files (src/queue/spare_files.ts):
 * what a batch costs when no file can be made, and what a client's
 * transactions that end without a message cost the disk.
 */

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { DirSyncer } from "../../../src/queue/dir_sync.ts";
import { durabilityFs } from "../../../src/queue/fs_calls.ts";
import { SpareFiles } from "../../../src/queue/spare_files.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

/** A directory syncer that counts its syncs. */
class CountingSyncer {
  syncs = 0;
  sync(): Promise<void> {
    this.syncs++;
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Lets pending batches run to their end (a few turns of the event loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 2));
}

describe("SpareFiles (review)", () => {
  let root: string;
  let dir: string;
  let syncer: CountingSyncer;
  let pool: SpareFiles;
  const realOpen = durabilityFs.open;

  beforeEach(async () => {
    root = await makeTempDir("postern-spare-review-");
    dir = join(root, "queue");
    await mkdir(dir);
    syncer = new CountingSyncer();
    pool = new SpareFiles(dir, syncer as unknown as DirSyncer, { target: 4 });
  });
  afterEach(async () => {
    durabilityFs.open = realOpen;
    await pool.close();
    await removeDir(root);
  });

  it("does not fsync the directory for a batch that could make no file (EMFILE, ENOSPC)", async () => {
    let opens = 0;
    durabilityFs.open = () => {
      opens++;
      return Promise.reject(Object.assign(new Error("too many open files"), { code: "EMFILE" }));
    };
    // Every MAIL FROM asks for a spare while none can be made.
    for (let i = 0; i < 5; i++) {
      assert.equal(pool.hold(), undefined);
      await settle();
    }
    assert.ok(opens >= 5, "each hold tried again");
    assert.equal(syncer.syncs, 0, "a directory fsync with no new name to make durable");
  });
});
