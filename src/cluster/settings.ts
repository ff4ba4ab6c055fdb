/**
 * The `cluster` settings: which Redis-protocol server (Redis or Valkey) the
 * nodes of a fleet share, and how this node talks to it.
 *
 * @module
 */

/** Where the shared server listens. */
export type ClusterServer =
  | {
    kind: "tcp";
    host: string;
    port: number;
    /** `rediss://`: TLS to the server. */
    tls: boolean;
    /** An ACL user name (Redis 6 and later), from `redis://user@host`. */
    username: string | undefined;
    /** The database number, from `redis://host/2`. */
    db: number;
  }
  | { kind: "unix"; path: string };

/** The resolved `cluster` section. */
export interface ClusterConfig {
  /** The shared server. */
  server: ClusterServer;
  /** The text of `url`, for messages (it never holds a password). */
  url: string;
  /** The password, read from `password_file`. */
  password: string | undefined;
  /** PEM CAs that a `rediss://` server's certificate must chain to. */
  tlsCa: string | undefined;
  /** This node's name in the fleet. */
  nodeName: string;
  /** Longest wait for one call before this node falls back to its local counts. */
  timeoutMs: number;
  /** How often this node announces itself. */
  heartbeatMs: number;
  /** Prefix of every key Postern reads or writes. */
  keyPrefix: string;
}

/** The default port of Redis and Valkey. */
const DEFAULT_PORT = 6379;

/**
 * Parses `redis://[user@]host[:port][/db]`, `rediss://…` (TLS) or
 * `unix:/path/to/socket`. A password in the URL is refused: it belongs in
 * `password_file`, which can be kept unreadable to others.
 *
 * @throws {SyntaxError} naming what is wrong with the text.
 */
export function parseClusterUrl(text: string): ClusterServer {
  // Messages quote the text with its userinfo masked: a password must not
  // reach the log, `postern check` or /status, least of all in the message
  // that refuses it.
  const shown = maskUserinfo(text);
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length).replace(/^\/\/(?=\/)/, "");
    if (!path.startsWith("/")) {
      throw new SyntaxError(
        `"${shown}" must name an absolute socket path, as unix:/run/valkey.sock`,
      );
    }
    return { kind: "unix", path };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SyntaxError(`"${shown}" is not a URL such as redis://127.0.0.1:6379`);
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new SyntaxError(`"${shown}" must start with redis://, rediss:// or unix:`);
  }
  if (url.password !== "") {
    throw new SyntaxError(`"${shown}" holds a password: put it in cluster.password_file instead`);
  }
  if (url.hostname === "") throw new SyntaxError(`"${shown}" names no host`);
  const dbText = url.pathname.replace(/^\//, "");
  if (!/^\d{0,2}$/.test(dbText)) {
    throw new SyntaxError(`"${shown}": the path must be a database number such as /0`);
  }
  if (url.search !== "" || url.hash !== "") {
    throw new SyntaxError(`"${shown}" must have no query or fragment`);
  }
  return {
    kind: "tcp",
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? DEFAULT_PORT : Number(url.port),
    tls: url.protocol === "rediss:",
    username: url.username === "" ? undefined : decodeURIComponent(url.username),
    db: dbText === "" ? 0 : Number(dbText),
  };
}

/**
 * `text` with everything between `://` and its last "@" replaced by `***`.
 * RFC 3986 section 3.2.1 ends the userinfo at the first "/", but a text that
 * failed to parse may hold a password with a "/" in it; no host or database
 * number holds an "@", so masking up to the last one hides nothing else.
 */
export function maskUserinfo(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/).*@/is, "$1***@");
}
