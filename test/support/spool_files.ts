/**
 * What a running server's spool holds that is not a whole message: the
 * files of messages still arriving (in queue/ with an open seal) and
 * anything in incoming/. Once the sessions are over there must be none.
 * Empty files in queue/ are spares, made ahead of need
 * (src/queue/spare_files.ts): no message, whole or partial.
 *
 * @module
 */

import { open, readdir, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * The names in `<data>/spool/queue` but the empty spare files: the queued
 * messages and their state files.
 */
export async function queuedFiles(dataDir: string): Promise<string[]> {
  const queue = join(dataDir, "spool", "queue");
  const names: string[] = [];
  for (const name of await readdir(queue).catch(() => [] as string[])) {
    const size = await stat(join(queue, name)).then((s) => s.size, () => undefined);
    // Gone meanwhile (delivered, or a spare given back), or a spare.
    if (size === undefined || (size === 0 && name.endsWith(".msg"))) continue;
    names.push(name);
  }
  return names.sort();
}

/** Spool files (relative to `<data>/spool`) that are not a committed message or state. */
export async function partialSpoolFiles(dataDir: string): Promise<string[]> {
  const spool = join(dataDir, "spool");
  const partial = (await readdir(join(spool, "incoming")).catch(() => [] as string[]))
    .map((name) => `incoming/${name}`);
  for (const name of await readdir(join(spool, "queue")).catch(() => [] as string[])) {
    if (!name.endsWith(".msg")) continue;
    const head = new Uint8Array(7);
    let read = 0;
    let size = 0;
    try {
      const handle = await open(join(spool, "queue", name), "r");
      try {
        size = (await handle.stat()).size;
        read = (await handle.read(head, 0, head.byteLength, 0)).bytesRead;
      } finally {
        await handle.close();
      }
    } catch {
      continue; // delivered and removed meanwhile
    }
    if (size === 0) continue; // a spare
    if (new TextDecoder().decode(head.subarray(0, read)) !== "SEALED ") {
      partial.push(`queue/${name}`);
    }
  }
  return partial;
}
