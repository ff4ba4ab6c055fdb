/**
 * What a running server's spool holds that is not a whole message: the
 * files of messages still arriving (in queue/ with an open seal) and
 * anything in incoming/. Once the sessions are over there must be none.
 *
 * @module
 */

import { open, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Spool files (relative to `<data>/spool`) that are not a committed message or state. */
export async function partialSpoolFiles(dataDir: string): Promise<string[]> {
  const spool = join(dataDir, "spool");
  const partial = (await readdir(join(spool, "incoming")).catch(() => [] as string[]))
    .map((name) => `incoming/${name}`);
  for (const name of await readdir(join(spool, "queue")).catch(() => [] as string[])) {
    if (!name.endsWith(".msg")) continue;
    const head = new Uint8Array(7);
    let read = 0;
    try {
      const handle = await open(join(spool, "queue", name), "r");
      try {
        read = (await handle.read(head, 0, head.byteLength, 0)).bytesRead;
      } finally {
        await handle.close();
      }
    } catch {
      continue; // delivered and removed meanwhile
    }
    if (new TextDecoder().decode(head.subarray(0, read)) !== "SEALED ") {
      partial.push(`queue/${name}`);
    }
  }
  return partial;
}
