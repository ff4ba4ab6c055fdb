/**
 * Makes a new entry or a rename in a folder durable.
 *
 * @module
 */

import { open } from "node:fs/promises";

/**
 * Fsyncs the folder `dir`, so that a rename or a new entry in it survives a
 * crash (a file's own fsync does not cover its name). Some file systems
 * refuse to fsync a folder; the entry then stands as the file system keeps it.
 */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch {
    // Refused by the file system: nothing more can be done here.
  } finally {
    await handle.close();
  }
}
