import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DirSyncer } from "../../../src/queue/mod.ts";
import { makeTempDir, openFileDescriptors, removeDir } from "../helpers.ts";
import { FsRecorder } from "./fs_recorder.ts";

describe("DirSyncer", () => {
  let root: string;
  before(async () => {
    root = await makeTempDir("postern-dirsync-");
  });
  after(async () => {
    await removeDir(root);
  });

  it("sync() opens the directory itself and resolves only after its fsync has ended", async () => {
    const recorder = new FsRecorder();
    recorder.install();
    const syncer = new DirSyncer(root);
    try {
      await syncer.sync();
      recorder.mark("resolved");
    } finally {
      recorder.restore();
      await syncer.close();
    }
    const opened = recorder.find("open", "end", root);
    const begin = recorder.find("sync", "begin", root, opened);
    const end = recorder.find("sync", "end", root, begin);
    assert.ok(end < recorder.find("mark", "end", "resolved"), recorder.describe());
    // Closed after the fsync, not leaked.
    recorder.find("close", "end", root, end);
  });

  it("sync() covers each call with an fsync that began after it; concurrent calls share one", async () => {
    const recorder = new FsRecorder();
    recorder.install();
    const syncer = new DirSyncer(root);
    try {
      const first = syncer.sync().then(() => recorder.mark("first"));
      recorder.mark("asked second");
      const rest = Array.from({ length: 20 }, () => syncer.sync());
      await Promise.all([first, Promise.all(rest).then(() => recorder.mark("rest"))]);
    } finally {
      recorder.restore();
      await syncer.close();
    }
    const ends = recorder.events.flatMap((e, i) =>
      e.call === "sync" && e.phase === "end" ? [i] : []
    );
    // One for the first call, one for the 20 that came while it ran.
    assert.equal(ends.length, 2, recorder.describe());
    assert.ok(ends[0]! < recorder.find("mark", "end", "first"), recorder.describe());
    const secondBegin = recorder.find("sync", "begin", root, ends[0]!);
    assert.ok(secondBegin > recorder.find("mark", "end", "asked second"), recorder.describe());
    assert.ok(ends[1]! < recorder.find("mark", "end", "rest"), recorder.describe());
  });

  it("sync() resolves every one of many concurrent calls", async () => {
    const syncer = new DirSyncer(root);
    try {
      const calls = Array.from({ length: 50 }, () => syncer.sync());
      let resolved = 0;
      await Promise.all(calls.map((p) => p.then(() => resolved++)));
      assert.equal(resolved, 50);
    } finally {
      await syncer.close();
    }
  });

  it("sync() makes a call during a running fsync wait for a later batch", async () => {
    const syncer = new DirSyncer(root);
    try {
      const first = syncer.sync(); // starts an fsync at once
      const second = syncer.sync(); // arrives while it runs
      const third = syncer.sync(); // joins the same later batch
      assert.notEqual(first, second);
      assert.equal(second, third);
      const order: string[] = [];
      await Promise.all([
        first.then(() => order.push("first")),
        second.then(() => order.push("second")),
      ]);
      assert.deepEqual(order, ["first", "second"]);
    } finally {
      await syncer.close();
    }
  });

  it("sync() starts a new batch when called after the previous one finished", async () => {
    const syncer = new DirSyncer(root);
    try {
      const first = syncer.sync();
      await first;
      const again = syncer.sync();
      assert.notEqual(again, first);
      await again;
    } finally {
      await syncer.close();
    }
  });

  it("sync() rejects when the directory is missing and recovers once it exists", async () => {
    const dir = join(root, "later");
    const syncer = new DirSyncer(dir);
    try {
      await assert.rejects(syncer.sync(), (err: unknown) => {
        assert.equal((err as { code?: string }).code, "ENOENT");
        return true;
      });
      await mkdir(dir);
      await syncer.sync();
    } finally {
      await syncer.close();
    }
  });

  /** The number of fsyncs of `dir` that ended while `run` ran. */
  async function fsyncsDuring(dir: string, run: () => Promise<void>): Promise<number> {
    const recorder = new FsRecorder();
    recorder.install();
    try {
      await run();
    } finally {
      recorder.restore();
    }
    return recorder.events.filter((e) => e.call === "sync" && e.phase === "end" && e.path === dir)
      .length;
  }

  it("with lingerMs, a busy directory gathers the calls of the linger into one fsync", async () => {
    const syncer = new DirSyncer(root, { lingerMs: 200 });
    try {
      const count = await fsyncsDuring(root, async () => {
        await syncer.sync(); // quiet: at once
        // Busy now: the next fsync waits 200 ms, and a call 20 ms later joins it.
        const first = syncer.sync();
        await new Promise((resolve) => setTimeout(resolve, 20));
        const second = syncer.sync();
        assert.equal(first, second);
        await Promise.all([first, second]);
      });
      assert.equal(count, 2);
    } finally {
      await syncer.close();
    }
  });

  it("with lingerMs, a quiet directory is synced at once", async () => {
    // A linger of 10 minutes: the test would time out if the first sync waited.
    const syncer = new DirSyncer(root, { lingerMs: 600_000 });
    try {
      assert.equal(await fsyncsDuring(root, () => syncer.sync()), 1);
    } finally {
      await syncer.close();
    }
  });

  it("without hold, keeps no descriptor between syncs (a Maildir per recipient pins none)", async () => {
    const syncer = new DirSyncer(root);
    try {
      const before = await openFileDescriptors();
      await syncer.sync();
      await syncer.sync();
      assert.equal(await openFileDescriptors(), before);
    } finally {
      await syncer.close();
    }
  });

  it("with hold, keeps one descriptor for every sync and closes it on close()", async () => {
    const syncer = new DirSyncer(root, { hold: true });
    const before = await openFileDescriptors();
    try {
      await syncer.sync();
      assert.equal(await openFileDescriptors(), before + 1);
      await syncer.sync();
      await syncer.sync();
      assert.equal(await openFileDescriptors(), before + 1);
    } finally {
      await syncer.close();
    }
    assert.equal(await openFileDescriptors(), before);
  });

  it("close() can be called before any sync and more than once", async () => {
    const syncer = new DirSyncer(root);
    await syncer.close();
    await syncer.sync();
    await syncer.close();
    await syncer.close();
  });

  it("close() resolves only after the syncs already asked for have finished", async () => {
    const syncer = new DirSyncer(root);
    const settled: string[] = [];
    const first = syncer.sync().then(() => settled.push("first"));
    const second = syncer.sync().then(() => settled.push("second"));
    await syncer.close();
    // The two calls share one batch; both settled before close() did.
    assert.deepEqual(settled, ["first", "second"]);
    await Promise.all([first, second]);
  });

  it("close() reports nothing when a sync failed; the caller of sync() got the error", async () => {
    const syncer = new DirSyncer(join(root, "no-such-dir"));
    await assert.rejects(syncer.sync(), { code: "ENOENT" });
    await syncer.close();
  });
});
