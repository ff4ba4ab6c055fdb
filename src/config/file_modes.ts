/**
 * Ownership and modes of what the command-line tools write into the
 * configuration directory (`postern user add`, `postern dkim keygen`), so
 * that it fits the README's deployment: `/etc/postern` owned
 * `root:postern`, mode 0750, the server running as `postern`.
 *
 * - A file that replaces another keeps its owner, group and mode.
 * - New folders get mode 0750 and new files 0640 (keys too), with the
 *   group of the configuration directory: readable by the service's group,
 *   never by others. The modes are set explicitly, whatever the umask.
 *
 * Changing the owner needs root; without it, the group is still set when
 * the caller may (its own groups), and otherwise left as created.
 *
 * @module
 */

import { chmod, chown, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname, relative, resolve, sep } from "node:path";
import { syncDir } from "../sync_dir.ts";

/** Mode of new folders: owner all, group read and enter, others nothing. */
export const NEW_DIR_MODE = 0o750;
/** Mode of new files, private keys included: owner read-write, group read. */
export const NEW_FILE_MODE = 0o640;

/** The group (gid) of the configuration directory. */
export async function configGroup(configDir: string): Promise<number> {
  return (await stat(configDir)).gid;
}

/**
 * Creates `dir` and any missing folder between it and `configDir`, each
 * with {@linkcode NEW_DIR_MODE} and the configuration directory's group.
 * Folders that exist are left as they are.
 */
export async function makeConfigDirs(configDir: string, dir: string): Promise<void> {
  const root = resolve(configDir);
  const target = resolve(dir);
  const rel = relative(root, target);
  if (rel.startsWith("..") || rel === "") {
    await mkdir(target, { recursive: true, mode: NEW_DIR_MODE });
    return;
  }
  const gid = await configGroup(root);
  let path = root;
  for (const part of rel.split(sep)) {
    path = `${path}${sep}${part}`;
    try {
      await mkdir(path, { mode: NEW_DIR_MODE });
    } catch (err) {
      if ((err as { code?: string }).code === "EEXIST") continue;
      throw err;
    }
    await setGroup(path, gid);
    await chmod(path, NEW_DIR_MODE);
  }
}

/**
 * Writes `data` to `path` atomically (a temporary file beside it, fsynced,
 * then renamed over it). The temporary file is created 0600, then given
 * the owner, group and mode of the file it replaces, or, for a new file,
 * the configuration directory's group and {@linkcode NEW_FILE_MODE}.
 */
export async function replaceConfigFile(
  configDir: string,
  path: string,
  data: string,
): Promise<void> {
  const temp = `${path}.tmp-${crypto.randomUUID()}`;
  const handle = await open(temp, "wx", 0o600);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await takeAttributes(configDir, temp, path);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/**
 * Creates `path` (it must not exist) with `data`, fsynced, in the
 * configuration directory's group with {@linkcode NEW_FILE_MODE}. The file
 * is 0600 until its group is set, so it is never readable by others.
 */
export async function writeNewConfigFile(
  configDir: string | undefined,
  path: string,
  data: string,
): Promise<void> {
  const handle = await open(path, "wx", 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await setGroup(path, await configGroup(configDir ?? dirname(path)));
  await chmod(path, NEW_FILE_MODE);
  await syncDir(dirname(path));
}

/** Gives `temp` the attributes of `previous`, or those of a new file. */
async function takeAttributes(configDir: string, temp: string, previous: string): Promise<void> {
  let old;
  try {
    old = await stat(previous);
  } catch (err) {
    if ((err as { code?: string }).code !== "ENOENT") throw err;
  }
  if (!old) {
    await setGroup(temp, await configGroup(configDir));
    await chmod(temp, NEW_FILE_MODE);
    return;
  }
  try {
    await chown(temp, old.uid, old.gid);
  } catch (err) {
    if (!notPermitted(err)) throw err;
    // Not root: keep at least the group, when it is one of ours.
    await setGroup(temp, old.gid);
  }
  await chmod(temp, old.mode & 0o7777);
}

/** Sets the group, keeping the owner; a group the caller may not give is left as it is. */
async function setGroup(path: string, gid: number): Promise<void> {
  const current = await stat(path);
  if (current.gid === gid) return;
  try {
    await chown(path, current.uid, gid);
  } catch (err) {
    if (!notPermitted(err)) throw err;
  }
}

function notPermitted(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === "EPERM" || code === "EACCES";
}
