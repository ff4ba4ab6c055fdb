/**
 * Delivery over LMTP (RFC 2033) to a mail store such as Dovecot, through
 * nodemailer's SMTP client in its LMTP mode. One transaction per message
 * and LMTP server: every mailbox recipient in it, and one reply per
 * recipient accepted at RCPT after the data (RFC 2033 section 4.2). A
 * recipient's own reply (its refusal at RCPT, or its reply to the data) is
 * its result, also when the transaction fails afterwards or the connection
 * is lost before the others' replies (`lmtp_replies.ts`, `lmtp_results.ts`).
 * Connections are kept for the next message.
 *
 * @module
 */

import { Readable } from "node:stream";
import type SMTPConnection from "nodemailer/lib/smtp-connection";
import { connectEndpoint, type Endpoint, endpointText } from "../users/endpoint.ts";
import { RecipientReplies } from "./lmtp_replies.ts";
import { type LmtpResults, lmtpResults } from "./lmtp_results.ts";

export type { LmtpResults } from "./lmtp_results.ts";

/** Settings of the LMTP courier. */
export interface LmtpOptions {
  /** Name sent with LHLO. */
  hostname: string;
  /** Time allowed to connect and get the greeting. Default: 30 s. */
  connectTimeoutMs?: number;
  /** Inactivity allowed during a transaction. Default: 5 min. */
  commandTimeoutMs?: number;
  /** How long an idle connection is kept for the next message. Default: 5 s. */
  idleMs?: number;
  /** Idle connections kept per server. Default: 4. */
  maxIdle?: number;
}

/** One open LMTP connection. */
interface Session {
  connection: SMTPConnection;
  /** Each recipient's reply (at RCPT, or to the data) in the transaction in progress. */
  replies: RecipientReplies;
  closed: boolean;
  idleTimer?: ReturnType<typeof setTimeout>;
}

/** Delivers messages over LMTP, reusing connections. */
export class LmtpCourier {
  #options: Required<LmtpOptions>;
  #idle = new Map<string, Session[]>();
  /** Connections opened so far (reuse shows as fewer of these than messages). */
  connectionsOpened = 0;

  /** Creates the courier; nothing connects until the first message. */
  constructor(options: LmtpOptions) {
    this.#options = {
      connectTimeoutMs: 30_000,
      // RFC 5321 section 4.5.3.2: minutes for each command and the data.
      commandTimeoutMs: 5 * 60_000,
      idleMs: 5_000,
      maxIdle: 4,
      ...options,
    };
  }

  /**
   * Delivers one message to `recipients` (distinct addresses) through the
   * server at `endpoint`. Never rejects: a recipient the server replied
   * to (at RCPT or to the data) has that reply's result; a failure of the
   * connection or the transaction is the temporary (or, for a 5xx before
   * the data, such as to MAIL FROM or DATA, permanent) result of every
   * recipient without a reply.
   */
  async deliver(
    endpoint: Endpoint,
    envelope: { from: string; to: readonly string[] },
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<LmtpResults> {
    const where = endpointText(endpoint);
    let reused = this.#checkout(where);
    for (;;) {
      let session: Session;
      try {
        session = reused ?? await this.#open(endpoint);
      } catch (err) {
        return lmtpResults(where, envelope.to, new Map(), {
          code: undefined,
          text: describe(err),
          afterData: false,
        });
      }
      const progress = { dataStarted: false };
      try {
        const results = await this.#send(session, where, envelope, open, progress);
        this.#checkin(where, session);
        return results;
      } catch (err) {
        this.#discard(session);
        // A kept connection the server has closed meanwhile fails before
        // the data; the message has gone nowhere, so a fresh connection
        // may take it at once. Not once the data started to go out (a
        // close during or after it shows as a CONN error): the server may
        // have stored it for the recipients whose replies were lost, and
        // the next attempt is soon enough for such a duplicate (RFC 5321
        // section 6.1).
        if (reused && !progress.dataStarted) {
          reused = undefined;
          continue;
        }
        // The recipients the server replied to before the failure keep
        // their replies: a 250 to the data is final (RFC 2033 section 4.2),
        // and so is a refusal at RCPT, which left the recipient out of the
        // transaction that failed (RFC 2033 section 4.2: the data is
        // answered for the recipients accepted at RCPT alone). A 4xx there
        // is retried, a 5xx bounced, whatever became of the others (RFC
        // 5321 section 4.2.1).
        return lmtpResults(where, envelope.to, session.replies.replies, {
          code: (err as { responseCode?: number }).responseCode,
          text: (err as { response?: string }).response ?? describe(err),
          afterData: progress.dataStarted,
        });
      }
    }
  }

  /** Closes every idle connection. */
  close(): void {
    for (const sessions of this.#idle.values()) {
      for (const session of sessions) this.#discard(session);
    }
    this.#idle.clear();
  }

  #checkout(where: string): Session | undefined {
    const sessions = this.#idle.get(where) ?? [];
    for (let session = sessions.pop(); session; session = sessions.pop()) {
      clearTimeout(session.idleTimer);
      if (!session.closed) return session;
    }
    return undefined;
  }

  #checkin(where: string, session: Session): void {
    if (session.closed) return;
    const sessions = this.#idle.get(where) ?? [];
    if (sessions.length >= this.#options.maxIdle) {
      this.#discard(session);
      return;
    }
    sessions.push(session);
    this.#idle.set(where, sessions);
    session.idleTimer = setTimeout(() => {
      const list = this.#idle.get(where);
      if (list) list.splice(list.indexOf(session) >>> 0, 1);
      this.#discard(session);
    }, this.#options.idleMs);
  }

  #discard(session: Session): void {
    clearTimeout(session.idleTimer);
    if (session.closed) return;
    session.closed = true;
    try {
      session.connection.quit();
    } catch {
      session.connection.close();
    }
  }

  async #open(endpoint: Endpoint): Promise<Session> {
    // nodemailer is loaded on the first delivery, not at start-up (issue 17).
    const { default: Connection } = await import("nodemailer/lib/smtp-connection");
    const socket = await connectEndpoint(endpoint, this.#options.connectTimeoutMs);
    this.connectionsOpened++;
    const connection = new Connection({
      // nodemailer takes a connected socket as it is (a Unix socket too).
      connection: socket,
      lmtp: true,
      name: this.#options.hostname,
      ignoreTLS: true,
      greetingTimeout: this.#options.connectTimeoutMs,
      socketTimeout: this.#options.commandTimeoutMs,
    });
    let replies: RecipientReplies;
    try {
      // Before connect(): a nodemailer without what the tap needs fails here, at once.
      replies = RecipientReplies.attach(connection);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    const session: Session = { connection, replies, closed: false };
    const closed = () => {
      session.closed = true;
    };
    return await new Promise((resolve, reject) => {
      connection.once("error", (err: unknown) => {
        closed();
        connection.close();
        reject(err);
      });
      connection.connect(() => {
        connection.removeAllListeners("error");
        connection.on("error", closed);
        connection.on("end", closed);
        resolve(session);
      });
    });
  }

  #send(
    session: Session,
    where: string,
    envelope: { from: string; to: readonly string[] },
    open: () => AsyncIterable<Uint8Array>,
    progress: { dataStarted: boolean },
  ): Promise<LmtpResults> {
    session.replies.begin();
    // nodemailer reads the message only once the server took DATA.
    const body = (async function* () {
      progress.dataStarted = true;
      yield* open();
    })();
    const stream = Readable.from(body, { objectMode: false });
    return new Promise((resolve, reject) => {
      session.connection.send(
        { from: envelope.from, to: [...envelope.to] },
        stream,
        (err) => {
          // Every recipient refused at RCPT (nodemailer's only error with
          // that command): an outcome for each, not a failure.
          if (err && (err as { command?: string }).command !== "RCPT TO") {
            stream.destroy();
            reject(err);
            return;
          }
          // The refusals at RCPT, and every reply to the data (RFC 2033
          // section 4.2: one for each recipient the server accepted).
          const results = lmtpResults(where, envelope.to, session.replies.replies);
          if (err) {
            // Nothing was sent: end the transaction so the connection serves the next.
            resetThenResolve(session, () => resolve(results));
            return;
          }
          resolve(results);
        },
      );
    });
  }
}

/** How long a store whose RSET was refused has to answer the QUIT that follows. */
const QUIT_GRACE_MS = 5_000;

/**
 * Sends RSET on `session` and calls `done` once, when it is answered or
 * the connection ends first; a refused RSET ends the connection with QUIT.
 * nodemailer drops the RSET's callback when the connection closes (the
 * server restarting, the command timeout): waiting for it alone left the
 * delivery, and the queue attempt, waiting for ever.
 */
function resetThenResolve(session: Session, done: () => void): void {
  const { connection } = session;
  if (session.closed) {
    done();
    return;
  }
  let settled = false;
  const settle = (closed: boolean) => {
    if (settled) return;
    settled = true;
    if (closed) session.closed = true;
    connection.removeListener("end", lost);
    connection.removeListener("error", lost);
    done();
  };
  const lost = () => settle(true);
  connection.on("end", lost);
  connection.on("error", lost);
  connection.reset((resetErr) => {
    if (resetErr === null || resetErr === undefined) return settle(false);
    // A store that will not end the transaction cannot take the next one on
    // this connection: say QUIT now (RFC 5321 section 4.1.1.10) rather than
    // leave the socket open until the server's or our command timeout.
    settle(true);
    try {
      connection.quit();
    } catch {
      connection.close();
      return;
    }
    // Nor need it answer the QUIT: its connection ends soon whatever it does.
    const timer = setTimeout(() => connection.close(), QUIT_GRACE_MS);
    (timer as { unref?: () => void }).unref?.();
    connection.once("end", () => clearTimeout(timer));
  });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
