/**
 * Editing `domains/<domain>/users`: one user per line, `name` for a
 * mailbox only, `name <scrypt hash>` for a user who may also log in to
 * submit mail. Comments and other lines are kept as they are. The file is
 * replaced atomically (written aside, then renamed), so a running server
 * reloads either the old or the new version, never half of one.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { normalizeDomain } from "../aliases/mod.ts";
import { makeConfigDirs, replaceConfigFile } from "../config/file_modes.ts";
import { isPasswordHash } from "./password.ts";

/** A user as the file has it. */
export interface UserEntry {
  name: string;
  /** True when the user has a password (may submit mail). */
  canLogIn: boolean;
}

/** Splits `user@domain`, normalized; throws on anything else. */
export function splitAddress(address: string): { name: string; domain: string } {
  const at = address.lastIndexOf("@");
  const name = address.slice(0, at).toLowerCase();
  if (at <= 0 || !/^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+$/.test(name) || name.includes("..")) {
    throw new Error(`"${address}" is not an address such as alice@example.com`);
  }
  const domain = normalizeDomain(address.slice(at + 1));
  // The domain names a folder: a real domain name only, nothing path-like.
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)) {
    throw new Error(`"${address}" is not an address such as alice@example.com`);
  }
  return { name, domain };
}

function usersPath(configDir: string, domain: string): string {
  return join(configDir, "domains", domain, "users");
}

async function readLines(path: string): Promise<string[]> {
  try {
    const text = await readFile(path, "utf8");
    const lines = text.split(/\r?\n/);
    if (lines.at(-1) === "") lines.pop();
    return lines;
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return [];
    throw err;
  }
}

/**
 * One line of a users file: `name`, or `name <credentials>` (white space
 * or a colon between). Undefined for blank lines and comments.
 */
export function parseUserLine(line: string): { name: string; credentials: string } | undefined {
  const trimmed = line.trim();
  if (trimmed === "" || trimmed.startsWith("#")) return undefined;
  const name = trimmed.split(/[\s:]/, 1)[0]!;
  return {
    name: name.toLowerCase(),
    credentials: trimmed.slice(name.length).replace(/^[\s:]+/, ""),
  };
}

function nameOf(line: string): string | undefined {
  return parseUserLine(line)?.name;
}

/**
 * Replaces the file atomically; it keeps its owner, group and mode, and a
 * new one is 0640 in the configuration directory's group.
 */
async function replaceFile(configDir: string, path: string, lines: string[]): Promise<void> {
  await replaceConfigFile(configDir, path, lines.length > 0 ? `${lines.join("\n")}\n` : "");
}

/** Adds `address` with `hash`, or sets the hash of an existing user. Returns true when added. */
export async function setUser(configDir: string, address: string, hash: string): Promise<boolean> {
  const { name, domain } = splitAddress(address);
  const path = usersPath(configDir, domain);
  await makeConfigDirs(configDir, join(configDir, "domains", domain));
  const lines = await readLines(path);
  const at = lines.findIndex((line) => nameOf(line) === name);
  if (at >= 0) lines[at] = `${name} ${hash}`;
  else lines.push(`${name} ${hash}`);
  await replaceFile(configDir, path, lines);
  return at < 0;
}

/** Removes `address`; returns false when there was no such user. */
export async function removeUser(configDir: string, address: string): Promise<boolean> {
  const { name, domain } = splitAddress(address);
  const path = usersPath(configDir, domain);
  const lines = await readLines(path);
  const kept = lines.filter((line) => nameOf(line) !== name);
  if (kept.length === lines.length) return false;
  await replaceFile(configDir, path, kept);
  return true;
}

/** The users of `domain`, in file order. */
export async function listUsers(configDir: string, domain: string): Promise<UserEntry[]> {
  const lines = await readLines(usersPath(configDir, splitAddress(`x@${domain}`).domain));
  return lines.flatMap((line) => {
    const parsed = parseUserLine(line);
    if (!parsed) return [];
    return [{ name: parsed.name, canLogIn: isPasswordHash(parsed.credentials) }];
  });
}
