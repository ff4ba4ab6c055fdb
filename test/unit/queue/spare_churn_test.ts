/**
 * A client's transactions that end without a message (MAIL FROM, RSET,
 * MAIL FROM, ...) must not cost a file created and a file removed in
 * queue/ each, and a directory fsync every few of them: before the spares
 * they cost the disk nothing. A spare whose ID no log line carried goes
 * back to the ready pool; one whose ID was logged (a refused recipient)
 * is removed, as an ID names one transaction in the logs.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { durabilityFs } from "../../../src/queue/fs_calls.ts";
import { Spool } from "../../../src/queue/spool.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { exists, spareId, until } from "./fixtures.ts";

describe("Spool spares under a MAIL/RSET loop", () => {
  let root: string;
  let spool: Spool;
  const realOpen = durabilityFs.open;
  const realUnlink = durabilityFs.unlink;
  let created = 0;
  let removed = 0;

  beforeEach(async () => {
    root = await makeTempDir("postern-spare-churn-");
    spool = new Spool(root, { spares: { target: 4 } });
    await spool.init();
    created = 0;
    removed = 0;
    durabilityFs.open = (path, flags, mode) => {
      if (flags === "wx+") created++;
      return realOpen(path, flags, mode);
    };
    durabilityFs.unlink = (path) => {
      removed++;
      return realUnlink(path);
    };
  });
  afterEach(async () => {
    durabilityFs.open = realOpen;
    durabilityFs.unlink = realUnlink;
    await spool.close();
    await removeDir(root);
  });

  it("50 transactions that end without a message or a log line make no more files than the pool's target", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      // A client's pace: a turn of the event loop between its commands.
      const id = spool.newId();
      ids.add(id);
      spool.releaseId(id, true);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    assert.ok(created <= 4, `files created: ${created}, removed: ${removed}`);
    assert.equal(removed, 0);
    assert.ok(ids.size <= 5, `${ids.size} IDs for 4 spares and the first, fresh one`);
  });

  it("a transaction whose ID was logged gives its file back to be removed, never to be used again", async () => {
    const id = await spareId(spool);
    spool.releaseId(id, false);
    await until(async () => !(await exists(join(root, "spool", "queue", `${id}.msg`))));
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const next = spool.newId();
      seen.add(next);
      spool.releaseId(next, true);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    assert.ok(!seen.has(id), "a logged ID came back");
  });
});
