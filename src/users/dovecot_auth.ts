/**
 * A client of Dovecot's authentication service, version 1.x of its
 * protocols (Dovecot's "Authentication Protocol" documentation):
 *
 * - the client protocol, on the `auth-client` socket, checks a user's
 *   password (mechanism PLAIN, whatever the SMTP client used: smtp-server
 *   has decoded LOGIN into the same user name and password);
 * - the master protocol, on the `auth-userdb` socket, looks a user up in
 *   the userdb, which tells whether a mailbox exists.
 *
 * One connection per request: logins and recipient checks are rare next to
 * the cost of a connection to a local socket, and nothing stays open for a
 * Dovecot restart to break.
 *
 * @module
 */

import { connectEndpoint, type Endpoint, endpointText } from "./endpoint.ts";
import { field, LineChannel, tabEscape } from "./dovecot_lines.ts";

/** The outcome of a password check. */
export type DovecotLogin =
  /** The password is right; `user` is the name Dovecot knows the user by. */
  | { result: "ok"; user: string }
  /** Wrong name or password. */
  | { result: "fail" }
  /** Dovecot could not decide now (its passdb failed): try again later. */
  | { result: "temporary"; reason: string };

/** What a login carries besides the credentials, for Dovecot's log and checks. */
export interface LoginContext {
  /** The client's address (`rip`). */
  remoteIp?: string | undefined;
  /** Our address the client connected to (`lip`). */
  localIp?: string | undefined;
}

/** The outcome of a userdb lookup. */
export type DovecotUserLookup = "found" | "notfound";

/** Time allowed for one request, connection included. Dovecot delays failures 2 s itself. */
const DEFAULT_TIMEOUT_MS = 15_000;
/** The service name Dovecot sees, for service-specific passdb and userdb rules. */
const SERVICE = "smtp";

// Dovecot refuses a second connection that claims the PID of one still open
// ("BUG: Authentication client gave a PID … of existing connection"), so
// each connection gets a number of its own.
let connectionNumber = crypto.getRandomValues(new Uint32Array(1))[0]! % 1_000_000_000;

/** Talks to Dovecot's auth service. */
export class DovecotAuth {
  readonly #client: Endpoint | undefined;
  readonly #userdb: Endpoint | undefined;
  readonly #timeoutMs: number;

  /** `client`: the auth-client socket; `userdb`: the auth-userdb socket. */
  constructor(
    options: { client?: Endpoint | undefined; userdb?: Endpoint | undefined; timeoutMs?: number },
  ) {
    this.#client = options.client;
    this.#userdb = options.userdb;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** True when passwords are checked by Dovecot. */
  get checksPasswords(): boolean {
    return this.#client !== undefined;
  }

  /** True when recipients can be looked up in Dovecot's userdb. */
  get looksUpUsers(): boolean {
    return this.#userdb !== undefined;
  }

  /**
   * Checks a user name and password with mechanism PLAIN.
   *
   * @throws {Error} when Dovecot cannot be reached or answers out of protocol.
   */
  async login(user: string, password: string, context: LoginContext = {}): Promise<DovecotLogin> {
    if (!this.#client) throw new Error("no Dovecot auth-client socket is configured");
    const what = `Dovecot auth ${endpointText(this.#client)}`;
    const channel = new LineChannel(
      await connectEndpoint(this.#client, this.#timeoutMs),
      this.#timeoutMs,
      what,
    );
    try {
      connectionNumber = (connectionNumber % 2_000_000_000) + 1;
      channel.send("VERSION\t1\t2", `CPID\t${connectionNumber}`);
      // The handshake: VERSION, then MECH, SPID, CUID, COOKIE lines up to DONE.
      const mechanisms = new Set<string>();
      for (let line = await channel.next(); line[0] !== "DONE"; line = await channel.next()) {
        if (line[0] === "VERSION" && line[1] !== "1") {
          throw new Error(`${what}: unsupported protocol version ${line[1]}`);
        }
        if (line[0] === "MECH" && line[1]) mechanisms.add(line[1].toUpperCase());
      }
      if (!mechanisms.has("PLAIN")) {
        throw new Error(`${what}: mechanism PLAIN is not enabled (auth_mechanisms)`);
      }
      // RFC 4616: authzid NUL authcid NUL passwd, with no authzid.
      const response = toBase64(new TextEncoder().encode(`\0${user}\0${password}`));
      const params = [
        `service=${SERVICE}`,
        // Only encrypted sessions get this far (the listener refuses AUTH in the clear).
        "secured",
        // Postern limits failed logins per client itself.
        "no-penalty",
        // A login to send mail, not to be proxied anywhere.
        "nologin",
        ...context.remoteIp ? [`rip=${tabEscape(context.remoteIp)}`] : [],
        ...context.localIp ? [`lip=${tabEscape(context.localIp)}`] : [],
        `resp=${response}`,
      ];
      channel.send(["AUTH", "1", "PLAIN", ...params].join("\t"));
      const reply = await channel.next();
      if (reply[1] !== "1") throw new Error(`${what}: unexpected answer ${reply[0]}`);
      switch (reply[0]) {
        case "OK":
          return { result: "ok", user: field(reply.slice(2), "user") || user };
        case "FAIL": {
          const fields = reply.slice(2);
          // "temp": the passdb failed, not the password.
          if (field(fields, "temp") !== undefined) {
            return { result: "temporary", reason: field(fields, "reason") ?? "temporary failure" };
          }
          return { result: "fail" };
        }
        default:
          throw new Error(`${what}: unexpected answer ${reply[0]}`);
      }
    } finally {
      channel.close();
    }
  }

  /**
   * Looks `user` up in the userdb.
   *
   * @throws {Error} when Dovecot cannot be reached, refuses the lookup
   * (the socket's permissions) or its userdb fails.
   */
  async lookup(user: string): Promise<DovecotUserLookup> {
    if (!this.#userdb) throw new Error("no Dovecot auth-userdb socket is configured");
    const what = `Dovecot userdb ${endpointText(this.#userdb)}`;
    const channel = new LineChannel(
      await connectEndpoint(this.#userdb, this.#timeoutMs),
      this.#timeoutMs,
      what,
    );
    try {
      channel.send(
        "VERSION\t1\t0",
        ["USER", "1", tabEscape(user), `service=${SERVICE}`].join("\t"),
      );
      for (;;) {
        const line = await channel.next();
        switch (line[0]) {
          case "VERSION":
            if (line[1] !== "1") {
              throw new Error(`${what}: unsupported protocol version ${line[1]}`);
            }
            continue;
          case "SPID":
            continue;
          case "USER":
            return "found";
          case "NOTFOUND":
            return "notfound";
          case "FAIL":
            throw new Error(`${what}: lookup failed: ${field(line.slice(2), "reason") ?? "-"}`);
          default:
            throw new Error(`${what}: unexpected answer ${line[0]}`);
        }
      }
    } finally {
      channel.close();
    }
  }
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
