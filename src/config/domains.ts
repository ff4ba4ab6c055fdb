/**
 * The domains of a configuration directory: one folder each under
 * `domains/` (its users, aliases and DKIM keys) and the settings that
 * `postern.yaml` gives it (any_user, the LMTP server, the DKIM selector),
 * spelled in either case.
 *
 * @module
 */

import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { AliasSyntaxError, normalizeDomain, parseAliases } from "../aliases/mod.ts";
import { type Endpoint, parseEndpoint } from "../users/endpoint.ts";
import { isPasswordHash, parseUserLine } from "../users/mod.ts";
import { ConfigError, describe, errorCode, readOptional } from "./config_error.ts";
import { CONFIG_FILE_NAME } from "./defaults.ts";
import { loadDkim } from "./dkim.ts";
import type { ConfigFile } from "./schema.ts";
import type { DomainConfig } from "./types.ts";

/** The domains of `configDir`, folders and `postern.yaml` keys together. */
export function loadDomains(
  configDir: string,
  file: ConfigFile,
): Map<string, DomainConfig> {
  const domains = new Map<string, DomainConfig>();
  const domainsDir = join(configDir, "domains");
  let entries: string[] = [];
  try {
    entries = readdirSync(domainsDir, { withFileTypes: true })
      .filter((e) => e.isDirectory() || e.isSymbolicLink())
      .map((e) => e.name)
      .filter((name) => !name.startsWith("."));
  } catch (err) {
    if (errorCode(err) !== "ENOENT") {
      throw new ConfigError(domainsDir, `${domainsDir}: cannot list domains: ${describe(err)}`);
    }
  }
  // Folders and postern.yaml keys may spell a domain in different cases;
  // they are one domain, with the folder's files and the file's settings.
  const folders = new Map(entries.map((dir) => [normalizeDomain(dir), dir]));
  const settingsByName = new Map(
    Object.entries(file.domains ?? {}).map(([key, value]) => [normalizeDomain(key), value]),
  );
  for (const name of new Set([...folders.keys(), ...settingsByName.keys()])) {
    const dir = join(domainsDir, folders.get(name) ?? name);
    domains.set(name, {
      name,
      anyUser: settingsByName.get(name)?.any_user ?? false,
      lmtp: lmtpOf(
        settingsByName.get(name)?.delivery?.lmtp,
        file,
        (p) => resolve(configDir, p),
      ),
      ...loadUsers(join(dir, "users")),
      aliases: loadAliases(join(dir, "aliases"), name),
      ...loadDkim(
        join(dir, "dkim"),
        name,
        settingsByName.get(name)?.dkim?.selector,
        join(configDir, CONFIG_FILE_NAME),
      ),
    });
  }
  return domains;
}

function loadUsers(
  path: string,
): { users: Set<string>; passwords: Map<string, string> } {
  const text = readOptional(path);
  const users = new Set<string>();
  const passwords = new Map<string, string>();
  if (text === undefined) return { users, passwords };
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    // `name` (a mailbox), or `name <scrypt hash>` (a user who may also log
    // in to submit mail).
    const parsed = parseUserLine(raw);
    if (!parsed) continue;
    const { name, credentials } = parsed;
    if (name.includes("@") || name.includes(",")) {
      throw new ConfigError(
        path,
        `${path}:${index + 1}: user "${name}" must be a bare name, without a domain or commas`,
      );
    }
    if (credentials !== "") {
      if (!isPasswordHash(credentials)) {
        throw new ConfigError(
          path,
          `${path}:${index + 1}: the password of "${name}" is not a hash from "postern user add"`,
        );
      }
      passwords.set(name, credentials);
    }
    users.add(name);
  }
  return { users, passwords };
}

function loadAliases(path: string, domain: string) {
  const text = readOptional(path);
  if (text === undefined) return new Map();
  try {
    return parseAliases(text, domain);
  } catch (err) {
    if (err instanceof AliasSyntaxError) {
      throw new ConfigError(path, `${path}:${err.line}: ${err.message}`);
    }
    throw err;
  }
}

/** A parsed endpoint (schema-checked), a relative socket path taken from the config directory. */
export function endpointOf(
  text: string | undefined,
  relativeToConfig: (p: string) => string,
): Endpoint | undefined {
  const endpoint = text === undefined ? undefined : parseEndpoint(text);
  if (endpoint?.kind !== "unix") return endpoint;
  return { kind: "unix", path: relativeToConfig(endpoint.path) };
}

/** A domain's LMTP server: its own setting ("off": none), else delivery.lmtp. */
export function lmtpOf(
  own: string | undefined,
  file: ConfigFile,
  relativeToConfig: (p: string) => string,
): Endpoint | undefined {
  if (own === "off") return undefined;
  return endpointOf(own ?? file.delivery?.lmtp, relativeToConfig);
}
