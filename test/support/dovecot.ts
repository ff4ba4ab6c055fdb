/**
 * A private Dovecot for end-to-end tests: Debian's dovecot-core,
 * dovecot-lmtpd and dovecot-imapd, started with a configuration of its own
 * in a temporary directory (no system service, no TCP listeners): LMTP,
 * auth-client, auth-userdb and IMAP on Unix sockets there, users in a
 * passwd-file, Maildirs there, and quotas for the over-quota cases.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { tempDir } from "../e2e/harness.ts";

/** A user of the private Dovecot. */
export interface DovecotUser {
  /** `name@domain`. */
  name: string;
  password: string;
  /** Extra userdb fields, e.g. `userdb_quota_rule=*:storage=1`. */
  extra?: string[];
}

/** A running private Dovecot. */
export interface Dovecot {
  dir: string;
  /** Its LMTP socket, auth-client socket and auth-userdb socket. */
  lmtp: string;
  authClient: string;
  authUserdb: string;
  /** Reads everything in a user's INBOX over IMAP (LOGIN, FETCH BODY[]). */
  imapFetchAll(user: string, password: string): Promise<string[]>;
  /** Dovecot's own log so far. */
  log(): Promise<string>;
  /** Starts it again after {@linkcode stop}. */
  start(): Promise<void>;
  /** Stops it and waits until its sockets refuse connections. */
  stop(): Promise<void>;
  /** Stops it and removes its directory. */
  cleanup(): Promise<void>;
}

/**
 * Runs a Dovecot command and waits for it to exit. Its output is not
 * piped: the daemon it starts would inherit the pipes and keep them open.
 */
function exec(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: "ignore" });
    child.once("error", () => resolve(127));
    child.once("exit", (code) => resolve(code ?? 1));
  });
}

/** Debian's dovecot, also when /usr/sbin is not on the PATH. */
const DOVECOT = existsSync("/usr/sbin/dovecot") ? "/usr/sbin/dovecot" : "dovecot";

/** True when a Unix socket accepts a connection. */
function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  // Bounded: 200 checks, 50 ms apart.
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Starts a private Dovecot with `users`. */
export async function startDovecot(users: DovecotUser[]): Promise<Dovecot> {
  const dir = await tempDir("postern-dovecot-");
  // Dovecot's auth process (user dovecot) reads the passwd-file, and mail
  // is stored under a user who is not root (Dovecot refuses UID 0).
  await chmod(dir, 0o755);
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const mailUid = uid === 0 ? 65534 : uid;
  const mailGid = uid === 0 ? 65534 : gid;
  const mail = join(dir, "mail");
  await mkdir(mail);
  if (uid === 0) await chown(mail, mailUid, mailGid);
  const passwd = join(dir, "passwd");
  await writeFile(
    passwd,
    users.map((u) => `${u.name}:{PLAIN}${u.password}::::::${(u.extra ?? []).join(" ")}\n`).join(""),
    { mode: 0o644 },
  );
  const run = join(dir, "run");
  const conf = join(dir, "dovecot.conf");
  const self = uid === 0 ? [] : (() => {
    const name = process.env["USER"] ?? String(uid);
    return [
      `default_internal_user = ${name}`,
      `default_login_user = ${name}`,
      `default_internal_group = ${name}`,
    ];
  })();
  await writeFile(
    conf,
    [
      `base_dir = ${run}`,
      `state_dir = ${join(dir, "state")}`,
      `log_path = ${join(dir, "dovecot.log")}`,
      ...self,
      "protocols = lmtp imap",
      // No TCP: every service below listens on a Unix socket in the directory.
      "listen = 127.0.0.1",
      "ssl = no",
      "disable_plaintext_auth = no",
      "auth_mechanisms = plain login",
      `mail_uid = ${mailUid}`,
      `mail_gid = ${mailGid}`,
      "first_valid_uid = 1",
      `mail_location = maildir:${mail}/%d/%n`,
      "mail_plugins = quota",
      "plugin {",
      "  quota = maildir:User quota",
      "}",
      `passdb {\n  driver = passwd-file\n  args = ${passwd}\n}`,
      `userdb {\n  driver = passwd-file\n  args = ${passwd}\n}`,
      "service lmtp {\n  unix_listener postern-lmtp {\n    mode = 0666\n  }\n}",
      "service imap-login {",
      "  inet_listener imap {\n    port = 0\n  }",
      "  inet_listener imaps {\n    port = 0\n  }",
      "  unix_listener imap-test {\n    mode = 0666\n  }",
      "}",
      // The listeners README's "With Dovecot" adds (there owned by postern, mode 0600;
      // here 0666, as the tests may run as any user). Dovecot tells a listener's
      // protocol by the end of its name: "-userdb" is a userdb socket, others client.
      "service auth {",
      "  unix_listener postern-auth {\n    mode = 0666\n  }",
      "  unix_listener postern-userdb {\n    mode = 0666\n  }",
      "}",
      "",
    ].join("\n"),
  );
  const lmtp = join(run, "postern-lmtp");
  const authClient = join(run, "postern-auth");
  const authUserdb = join(run, "postern-userdb");
  const imapSocket = join(run, "imap-test");

  const start = async () => {
    const code = await exec(DOVECOT, ["-c", conf]);
    if (code !== 0) throw new Error(`dovecot did not start (exit ${code}); see ${dir}/dovecot.log`);
    for (const path of [lmtp, authClient, authUserdb, imapSocket]) {
      await until(() => accepts(path), `Dovecot's ${path}`);
    }
  };
  const stop = async () => {
    const pidFile = join(run, "master.pid");
    let pid: number | undefined;
    try {
      pid = Number((await readFile(pidFile, "utf8")).trim());
    } catch {
      return;
    }
    await exec(DOVECOT, ["-c", conf, "stop"]);
    await until(() => {
      try {
        process.kill(pid!, 0);
        return Promise.resolve(false);
      } catch {
        return Promise.resolve(true);
      }
    }, "Dovecot to stop");
    await until(async () => !(await accepts(authClient)), "Dovecot's sockets to close");
  };
  await start();

  return {
    dir,
    lmtp,
    authClient,
    authUserdb,
    imapFetchAll: (user, password) => imapFetchAll(imapSocket, user, password),
    log: async () => {
      try {
        return await readFile(join(dir, "dovecot.log"), "utf8");
      } catch {
        return "";
      }
    },
    start,
    stop,
    cleanup: async () => {
      await stop();
      if ((await stat(dir).catch(() => undefined)) !== undefined) {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Logs in over IMAP (on a Unix socket) and fetches every message of the INBOX. */
function imapFetchAll(path: string, user: string, password: string): Promise<string[]> {
  const quote = (s: string) => `"${s.replace(/["\\]/g, "\\$&")}"`;
  const commands = [
    ["a", `LOGIN ${quote(user)} ${quote(password)}`],
    ["b", "SELECT INBOX"],
    ["c", "UID FETCH 1:* BODY.PEEK[]"],
    ["d", "LOGOUT"],
  ] as const;
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    let buffer = Buffer.alloc(0);
    /** Bytes of the buffer before the current command's answer. */
    let from = 0;
    /** -1: waiting for the greeting; then the command waiting for its answer. */
    let step = -1;
    let bodies: string[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`IMAP: no answer; got ${buffer.toString("latin1")}`));
    }, 20_000);
    const send = () => {
      from = buffer.length;
      const [tag, command] = commands[step]!;
      socket.write(`${tag} ${command}\r\n`);
    };
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const text = buffer.subarray(from).toString("latin1");
      if (step === -1) {
        if (!text.includes("\r\n")) return;
        if (!text.startsWith("* OK")) {
          clearTimeout(timer);
          socket.destroy();
          reject(new Error(`IMAP greeting: ${text}`));
          return;
        }
        step = 0;
        send();
        return;
      }
      const tag = commands[step]![0];
      const done = new RegExp(`(?:^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n`).exec(text);
      if (!done) return;
      if (done[1] !== "OK") {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`IMAP: ${done[0].trim()}`));
        return;
      }
      if (tag === "c") bodies = fetchedBodies(buffer.subarray(from));
      step++;
      if (step < commands.length) {
        send();
        return;
      }
      clearTimeout(timer);
      socket.destroy();
      resolve(bodies);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** The literals of `* n FETCH (BODY[] {size}` answers, in order. */
function fetchedBodies(buffer: Buffer): string[] {
  const bodies: string[] = [];
  const text = buffer.toString("latin1");
  const literal = /\* \d+ FETCH \(.*?BODY\[\] \{(\d+)\}\r\n/g;
  for (let m = literal.exec(text); m; m = literal.exec(text)) {
    const start = m.index + m[0].length;
    const size = Number(m[1]);
    bodies.push(buffer.subarray(start, start + size).toString("utf8"));
  }
  return bodies;
}
