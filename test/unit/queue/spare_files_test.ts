import assert from "node:assert/strict";
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { DirSyncer } from "../../../src/queue/dir_sync.ts";
import { isQueueId, newQueueId } from "../../../src/queue/id.ts";
import { SpareFiles, type SpareFilesOptions } from "../../../src/queue/spare_files.ts";
import { listDir, makeTempDir, removeDir } from "../helpers.ts";
import { until } from "./fixtures.ts";

/** A directory syncer that counts its syncs, and can hold them or fail them. */
class CountingSyncer {
  syncs = 0;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  failNext = false;

  hold(): void {
    this.#gate = new Promise((resolve) => this.#open = resolve);
  }

  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  async sync(): Promise<void> {
    this.syncs++;
    await this.#gate;
    if (this.failNext) {
      this.failNext = false;
      throw new Error("EIO");
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe("SpareFiles", () => {
  let root: string;
  let dir: string;
  let syncer: CountingSyncer;
  let clock: number;
  let pool: SpareFiles;

  function makePool(options: SpareFilesOptions = {}): SpareFiles {
    return new SpareFiles(dir, syncer as unknown as DirSyncer, {
      target: 4,
      now: () => clock,
      ...options,
    });
  }

  beforeEach(async () => {
    root = await makeTempDir("postern-spare-");
    dir = join(root, "queue");
    await mkdir(dir);
    syncer = new CountingSyncer();
    clock = Date.parse("2026-12-05T08:00:00Z");
    pool = makePool();
  });
  afterEach(async () => {
    syncer.release();
    await pool.close();
    await removeDir(root);
  });

  it("hands out nothing at first, then a batch made with one fsync of the directory", async () => {
    assert.equal(pool.hold(), undefined);
    assert.equal(pool.size, 2, "the pool starts small");
    await until(() => pool.ready === 2);
    assert.equal(syncer.syncs, 1, "one fsync for the whole batch");
    const names = await listDir(dir);
    assert.equal(names.length, 2);
    for (const name of names) {
      assert.match(name, /^[0-9a-z]{16}\.msg$/);
      const info = await stat(join(dir, name));
      assert.equal(info.size, 0);
      assert.equal(info.mode & 0o777, 0o600);
    }
  });

  it("makes nothing ready until the fsync that makes the names durable has returned", async () => {
    syncer.hold();
    assert.equal(pool.hold(), undefined);
    await until(async () => (await listDir(dir)).length === 2 && syncer.syncs === 1);
    assert.equal(pool.ready, 0);
    assert.equal(pool.hold(), undefined, "an ID handed out before its name is durable");
    syncer.release();
    await until(() => pool.ready === 2);
    assert.ok(pool.hold());
  });

  it("removes a batch whose fsync failed: none of it is handed out", async () => {
    syncer.failNext = true;
    assert.equal(pool.hold(), undefined);
    await until(() => syncer.syncs === 1);
    await until(async () => (await listDir(dir)).length === 0);
    assert.equal(pool.ready, 0);
    // The next hold starts a batch again.
    assert.equal(pool.hold(), undefined);
    await until(() => pool.ready === 2);
    assert.equal(syncer.syncs, 2);
  });

  it("gives a held spare's handle once, and writes through it land in <id>.msg", async () => {
    pool.hold();
    await until(() => pool.ready === 2);
    const id = pool.hold()!;
    assert.ok(isQueueId(id));
    assert.equal(pool.claim("0000000000000000"), undefined, "an ID never handed out");
    const handle = pool.claim(id)!;
    assert.ok(handle);
    assert.equal(pool.claim(id), undefined, "claimed twice");
    await handle.write(new TextEncoder().encode("hello"), 0, 5, 0);
    await handle.close();
    assert.equal(await readFile(join(dir, `${id}.msg`), "utf8"), "hello");
    // A release after the claim leaves the message alone.
    pool.release(id);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await readFile(join(dir, `${id}.msg`), "utf8"), "hello");
  });

  it("removes a released spare and never hands its ID out again", async () => {
    pool.hold();
    await until(() => pool.ready === 2);
    const id = pool.hold()!;
    pool.release(id);
    assert.equal(pool.held, 0);
    assert.equal(pool.claim(id), undefined);
    await until(async () => !(await listDir(dir)).includes(`${id}.msg`));
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      await until(() => pool.ready > 0);
      const next = pool.hold()!;
      seen.add(next);
      pool.release(next);
    }
    assert.ok(!seen.has(id));
    assert.equal(seen.size, 20, "an ID was handed out twice");
  });

  it("takes back a spare whose ID no log line carried, with the age it has", async () => {
    pool.hold();
    await until(() => pool.ready === 2);
    const id = pool.hold()!;
    clock += 30_000;
    pool.release(id, true);
    assert.equal(pool.ready, 2);
    assert.equal(pool.held, 0);
    assert.ok((await listDir(dir)).includes(`${id}.msg`));
    // Handed out again, and claimable.
    const again = [pool.hold()!, pool.hold()!];
    assert.ok(again.includes(id));
    for (const other of again) pool.release(other, true);
    // Still a minute old when it was made, not when it came back.
    clock += 30_001;
    assert.equal(pool.hold(), undefined, "a spare given back grew young again");
    await until(async () => !(await listDir(dir)).includes(`${id}.msg`));
  });

  it("takes back no more than the pool's size: spares given back past it are removed", async () => {
    // Grow to the target of 4, all ready.
    pool.hold();
    await until(() => pool.ready === 2);
    pool.release(pool.hold()!);
    pool.release(pool.hold()!);
    assert.equal(pool.hold(), undefined);
    assert.equal(pool.size, 4);
    await until(() => pool.ready === 2);
    pool.release(pool.hold()!);
    await until(() => pool.ready === 4);
    // Four transactions hold the four, and the pool refills behind them.
    const held = [pool.hold()!, pool.hold()!, pool.hold()!, pool.hold()!];
    await until(() => pool.ready === 3);
    // All four end unlogged: the pool is already full.
    for (const id of held) pool.release(id, true);
    assert.equal(pool.ready, 4, "the pool kept more than its size");
    assert.equal(pool.held, 0);
    await until(async () => (await listDir(dir)).length === 4);
  });

  it("takes no more than the pool's size from a batch that ends after spares came back", async () => {
    // Grow to the target of 4, all ready.
    pool.hold();
    await until(() => pool.ready === 2);
    pool.release(pool.hold()!);
    pool.release(pool.hold()!);
    assert.equal(pool.hold(), undefined);
    await until(() => pool.ready === 2);
    pool.release(pool.hold()!);
    await until(() => pool.ready === 4);
    // Four transactions hold the four; the batch refilling behind them
    // (three files) waits on its fsync of the directory.
    syncer.hold();
    const held = [pool.hold()!, pool.hold()!, pool.hold()!, pool.hold()!];
    await until(() => syncer.syncs === 4);
    // All four end unlogged while the batch is out: the pool has room for them.
    for (const id of held) pool.release(id, true);
    assert.equal(pool.ready, 4);
    // Then the batch lands on a full pool: what it made past the size goes.
    syncer.release();
    // Settled: every file in queue/ is a ready spare.
    await until(async () => (await listDir(dir)).length === pool.ready);
    assert.equal(pool.ready, 4, "the pool kept more than its size");
  });

  it("grows while mail outruns it, up to the target, refilling below half its size", async () => {
    pool.hold();
    await until(() => pool.ready === 2);
    // 1 of 2 ready: half the size, no batch.
    pool.release(pool.hold()!);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(syncer.syncs, 1);
    assert.equal(pool.size, 2);
    // 0 of 2: a batch of 2; a transaction that finds none meanwhile doubles the size.
    pool.release(pool.hold()!);
    syncer.hold();
    assert.equal(pool.hold(), undefined);
    assert.equal(pool.size, 4);
    syncer.release();
    await until(() => pool.ready === 2 && syncer.syncs === 2);
    // The next batch fills the larger pool; it never grows past the target.
    pool.release(pool.hold()!);
    await until(() => pool.ready === 4);
    for (let i = 0; i < 10; i++) {
      while (pool.ready > 0) pool.release(pool.hold()!);
      assert.equal(pool.hold(), undefined);
      await until(() => pool.ready > 0);
    }
    assert.equal(pool.size, 4);
    await until(async () => (await listDir(dir)).length <= 4);
  });

  it("drops ready spares older than a minute, and shrinks to one for a server taking mail now and then", async () => {
    pool.hold();
    await until(() => pool.ready === 2);
    const old = await listDir(dir);
    clock += 60_001;
    assert.equal(pool.hold(), undefined, "a stale spare was handed out");
    assert.equal(pool.size, 1);
    await until(() => pool.ready === 1);
    const now = await listDir(dir);
    assert.equal(now.filter((name) => old.includes(name)).length, 0);
    // The new one carries the clock's time.
    const id = pool.hold()!;
    assert.equal(id.slice(0, 10), newQueueId(clock).slice(0, 10));
    pool.release(id);
    // A message every two minutes: one spare made for each, never more.
    for (let i = 0; i < 3; i++) {
      await until(() => pool.ready === 1);
      clock += 120_000;
      assert.equal(pool.hold(), undefined);
      assert.equal(pool.size, 1);
    }
    await until(async () => (await listDir(dir)).length === 1);
  });

  it("removes a spare held past the hold limit, as a safety net", async () => {
    pool = makePool({ maxHoldMs: 1000 });
    pool.hold();
    await until(() => pool.ready === 2);
    const forgotten = pool.hold()!;
    clock += 1001;
    pool.hold();
    assert.equal(pool.claim(forgotten), undefined);
    await until(async () => !(await listDir(dir)).includes(`${forgotten}.msg`));
  });

  it("close() removes ready and held spares, and stops refilling", async () => {
    pool.hold();
    await until(() => pool.ready === 2);
    pool.hold();
    await pool.close();
    assert.deepEqual(await listDir(dir), []);
    assert.equal(pool.hold(), undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(await listDir(dir), []);
  });

  it("with a target of 0 makes nothing", async () => {
    pool = makePool({ target: 0 });
    assert.equal(pool.hold(), undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(await listDir(dir), []);
    assert.equal(syncer.syncs, 0);
  });
});
