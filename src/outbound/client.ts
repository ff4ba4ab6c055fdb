/**
 * One outbound SMTP connection, on nodemailer's SMTPConnection (a well-kept
 * client: PIPELINING, STARTTLS, AUTH, dot-stuffing), adapted to promises.
 *
 * nodemailer sets TCP_NODELAY on its sockets and writes each command batch
 * at once; the message goes out in the spool's large read chunks.
 *
 * @module
 */

import { isIP } from "node:net";
import { Readable } from "node:stream";
import type SMTPConnection from "nodemailer/lib/smtp-connection";
import { Wire } from "./wire.ts";

/** How the connection uses TLS. */
export type TlsMode =
  /** STARTTLS when offered, any certificate; plain text otherwise (RFC 7435). */
  | "opportunistic"
  /** No STARTTLS: the retry after a failed opportunistic handshake. */
  | "none"
  /** STARTTLS required with a certificate valid for the server name (MTA-STS, smarthost). */
  | "required"
  /** TLS from the first byte, certificate verified (port 465 smarthost). */
  | "implicit";

/** Where and how to connect. */
export interface SessionOptions {
  /** The address to connect to. */
  address: string;
  port: number;
  /** The server's host name, for SNI and certificate checks. */
  serverName: string;
  /** Name sent in EHLO. */
  ehlo: string;
  /** Local address to bind to. */
  bind?: string | undefined;
  tls: TlsMode;
  /** Extra CA certificates (PEM) for verified TLS. */
  ca?: string | undefined;
  auth?: { user: string; pass: string } | undefined;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

/** What a failure tells beyond the reply: where in the dialogue it happened. */
export interface FailureDetails {
  /** STARTTLS had been sent (RFC 3207): the failure is part of a failed handshake. */
  afterStarttls?: boolean;
}

/** A reply-bearing failure of the SMTP dialogue, or of the connection. */
export class SmtpError extends Error {
  /** The reply code, when the server answered. */
  readonly code: number | undefined;
  /** The server's reply text, when it answered. */
  readonly response: string | undefined;
  /** The stage: CONN, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO, DATA, … */
  readonly stage: string;
  /** See {@linkcode FailureDetails}. */
  readonly afterStarttls: boolean;

  /** Wraps nodemailer's error, with where it happened. */
  constructor(err: unknown, stage: string, details: FailureDetails = {}) {
    const e = err as {
      message?: string;
      responseCode?: number;
      response?: string;
      command?: string;
    };
    super(e.response ?? e.message ?? String(err));
    this.name = "SmtpError";
    this.code = typeof e.responseCode === "number" ? e.responseCode : undefined;
    this.response = e.response;
    this.stage = e.command ?? stage;
    this.afterStarttls = details.afterStarttls ?? false;
  }

  /** A 5xx reply: retrying elsewhere or later will not help. */
  get permanent(): boolean {
    return this.code !== undefined && this.code >= 500;
  }
}

/** How one message went, recipient by recipient. */
export interface SendOutcome {
  accepted: string[];
  /** Refused recipients with the reply each got. */
  rejected: Map<string, { code: number | undefined; response: string }>;
  /** The reply to the end of data (or the refusal that ended the transaction). */
  response: string;
}

/** An open, greeted (and, as asked, encrypted and authenticated) SMTP session. */
export class SmtpSession {
  readonly options: SessionOptions;
  #connection: SMTPConnection;
  #closed = false;
  /** Messages sent over this session. */
  messages = 0;

  private constructor(options: SessionOptions, connection: SMTPConnection) {
    this.options = options;
    this.#connection = connection;
    const closed = () => {
      this.#closed = true;
    };
    connection.on("end", closed);
    connection.on("error", closed);
  }

  /**
   * Connects, reads the greeting, says EHLO, upgrades with STARTTLS as
   * asked and logs in when there are credentials.
   *
   * @throws {SmtpError} naming the stage that failed.
   */
  static async open(options: SessionOptions): Promise<SmtpSession> {
    // nodemailer costs about 10 MB once loaded: loaded on the first
    // delivery, not at start-up (issue 17).
    const { default: Connection } = await import("nodemailer/lib/smtp-connection");
    const verified = options.tls === "required" || options.tls === "implicit";
    // RFC 6066 section 3: an IP address is never sent as the TLS server
    // name; the certificate is then checked against the address.
    const servername = isIP(options.serverName) ? undefined : options.serverName;
    const connection = new Connection({
      host: options.address,
      port: options.port,
      ...(servername ? { servername } : {}),
      name: options.ehlo,
      ...(options.bind ? { localAddress: options.bind } : {}),
      secure: options.tls === "implicit",
      requireTLS: options.tls === "required",
      ignoreTLS: options.tls === "none",
      opportunisticTLS: options.tls === "opportunistic",
      connectionTimeout: options.connectTimeoutMs,
      greetingTimeout: options.connectTimeoutMs,
      socketTimeout: options.commandTimeoutMs,
      // The addresses come from our resolver; never let the client resolve.
      allowInternalNetworkInterfaces: true,
      tls: {
        ...(servername ? { servername } : {}),
        // RFC 7435: opportunistic TLS takes any certificate; only a policy
        // (MTA-STS) or a configured relay asks for verification.
        rejectUnauthorized: verified,
        ...(options.ca ? { ca: options.ca } : {}),
      },
    });
    const wire = Wire.attach(connection);
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown, stage: string) => {
        if (settled) return;
        settled = true;
        connection.close();
        reject(new SmtpError(err, stage, { afterStarttls: wire.starttlsSent }));
      };
      connection.once("error", (err: unknown) => fail(err, "CONN"));
      // nodemailer hands a close before the greeting to this callback, not
      // to an "error" event.
      connection.connect((err) => {
        if (err) return fail(err, "CONN");
        if (!options.auth) {
          settled = true;
          resolve(new SmtpSession(options, connection));
          return;
        }
        connection.login(options.auth, (err) => {
          if (err) return fail(err, "AUTH");
          settled = true;
          resolve(new SmtpSession(options, connection));
        });
      });
    });
  }

  /** The session is encrypted. */
  get secure(): boolean {
    return (this.#connection as unknown as { secure: boolean }).secure === true;
  }

  /** The session is still open. */
  get usable(): boolean {
    return !this.#closed;
  }

  /**
   * Sends one message. Refused recipients are an outcome, not an error.
   *
   * @throws {SmtpError} when the sender or the message was refused, or
   * the connection failed.
   */
  send(
    envelope: { from: string; to: string[] },
    message: AsyncIterable<Uint8Array>,
  ): Promise<SendOutcome> {
    this.messages++;
    const stream = Readable.from(message, { objectMode: false });
    return new Promise((resolve, reject) => {
      this.#connection.send(envelope, stream, (err, info) => {
        const rejected = new Map<string, { code: number | undefined; response: string }>();
        const errors = (err ?? info) as {
          rejectedErrors?: Array<{ recipient?: string; responseCode?: number; response?: string }>;
        };
        for (const e of errors?.rejectedErrors ?? []) {
          if (e.recipient === undefined) continue;
          rejected.set(e.recipient, { code: e.responseCode, response: e.response ?? "" });
        }
        if (err) {
          // Every recipient refused: each has its own reply.
          if (rejected.size > 0 && (err as { command?: string }).command === "RCPT TO") {
            resolve({
              accepted: [],
              rejected,
              response: (err as { response?: string }).response ?? "",
            });
            return;
          }
          stream.destroy();
          reject(new SmtpError(err, "DATA"));
          return;
        }
        resolve({
          accepted: (info.accepted ?? []).map(String),
          rejected,
          response: info.response ?? "",
        });
      });
    });
  }

  /** RSET, after a refused transaction, so that the session can be used again. */
  reset(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.#connection.reset((err) => resolve(!err));
    });
  }

  /** QUIT and close. */
  close(): void {
    this.#closed = true;
    try {
      this.#connection.quit();
    } catch {
      this.#connection.close();
    }
  }
}
