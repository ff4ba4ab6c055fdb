/**
 * Resolves the `cluster` section: the server's URL parsed, the password
 * and CA files read, the defaults filled in.
 *
 * @module
 */

import { type ClusterConfig, parseClusterUrl } from "../cluster/settings.ts";
import { DEFAULTS } from "./defaults.ts";
import type { ConfigFile } from "./schema.ts";
import { ConfigError } from "./config_error.ts";
import { readRegularFile } from "../regular_file.ts";

/** What resolving needs besides the section. */
export interface ClusterContext {
  /** The node name's default. */
  hostname: string;
  /** The main file, for messages. */
  mainFile: string;
  /** Resolves a path relative to the configuration directory. */
  relativeToConfig: (path: string) => string;
}

/** The `cluster` settings, or undefined when the section is absent (a node on its own). */
export function resolveCluster(
  section: ConfigFile["cluster"],
  context: ClusterContext,
): ClusterConfig | undefined {
  if (section === undefined) return undefined;
  const { mainFile } = context;
  const read = (field: string, path: string) => {
    const file = context.relativeToConfig(path);
    try {
      // A regular file only: a FIFO here would block the server's start.
      const text = readRegularFile(file);
      if (text === undefined) throw new Error("no such file");
      return text;
    } catch (err) {
      throw new ConfigError(
        mainFile,
        `${mainFile}: cluster.${field}: cannot read "${file}": ${(err as Error).message}`,
      );
    }
  };
  const password = section.password_file === undefined
    ? undefined
    : read("password_file", section.password_file).split(/\r?\n/, 1)[0];
  if (password === "") {
    throw new ConfigError(mainFile, `${mainFile}: cluster.password_file: the first line is empty`);
  }
  const server = parseClusterUrl(section.url);
  const tlsCa = section.tls_ca_file === undefined
    ? undefined
    : read("tls_ca_file", section.tls_ca_file);
  if (tlsCa !== undefined && (server.kind !== "tcp" || !server.tls)) {
    throw new ConfigError(mainFile, `${mainFile}: cluster.tls_ca_file needs a rediss:// url`);
  }
  const timeoutMs = section.timeout ?? DEFAULTS.cluster.timeoutMs;
  if (timeoutMs < 1) {
    throw new ConfigError(mainFile, `${mainFile}: cluster.timeout must be at least 1ms`);
  }
  const heartbeatMs = section.heartbeat ?? DEFAULTS.cluster.heartbeatMs;
  if (heartbeatMs < 100) {
    throw new ConfigError(mainFile, `${mainFile}: cluster.heartbeat must be at least 100ms`);
  }
  return {
    server,
    url: section.url,
    password,
    tlsCa,
    nodeName: section.node_name ?? context.hostname,
    timeoutMs,
    heartbeatMs,
    keyPrefix: section.key_prefix ?? DEFAULTS.cluster.keyPrefix,
  };
}
