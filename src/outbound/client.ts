/**
 * One outbound SMTP connection, on nodemailer's SMTPConnection (a well-kept
 * client: PIPELINING, STARTTLS, AUTH, dot-stuffing), adapted to promises.
 *
 * nodemailer sets TCP_NODELAY on its sockets and writes each command batch
 * at once; the message goes out in the spool's large read chunks. A wire
 * (`wire.ts`) watches the dialogue: what the server offers, whether STARTTLS
 * was sent, a deadline for every reply, and malformed replies refused.
 *
 * @module
 */

import { isIP } from "node:net";
import { Readable } from "node:stream";
import type SMTPConnection from "nodemailer/lib/smtp-connection";
import { Wire, type WireFailure } from "./wire.ts";

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
  /**
   * Time allowed for each reply (and for silence while the data goes out);
   * twice this for the reply to the end of the data.
   */
  commandTimeoutMs: number;
}

/** What a failure tells beyond the reply: where in the dialogue it happened. */
export interface FailureDetails {
  /** STARTTLS had been sent (RFC 3207): the failure is part of a failed handshake. */
  afterStarttls?: boolean;
  /** The message had started to go out: the server may have it. */
  afterData?: boolean;
  /** The server sent a malformed reply (RFC 5321 section 4.2.1): fatal, as a 5xx. */
  malformed?: boolean;
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
  /** See {@linkcode FailureDetails}. */
  readonly afterData: boolean;
  /** See {@linkcode FailureDetails}. */
  readonly malformed: boolean;

  /** Wraps nodemailer's error (or the wire's), with where it happened. */
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
    this.afterData = details.afterData ?? false;
    this.malformed = details.malformed ?? false;
  }

  /** A 5xx or malformed reply: retrying elsewhere or later will not help. */
  get permanent(): boolean {
    return this.malformed || (this.code !== undefined && this.code >= 500);
  }
}

/** Options of {@linkcode SmtpSession.send}. */
export interface SendOptions {
  /**
   * MAIL FROM gets SMTPUTF8 (RFC 6531 section 3.4), also for ASCII addresses
   * (nodemailer adds it only for non-ASCII ones); the server must offer it.
   */
  smtputf8?: boolean;
  /** MAIL FROM gets BODY=8BITMIME (RFC 6152 section 3); the server must offer it. */
  eightBitMime?: boolean;
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
  #wire: Wire;
  #closed = false;
  /** The last error nodemailer emitted: why the connection ended. */
  #lastError: unknown;
  /** Fails the operation in progress (open, send, reset), if any. */
  #abort: ((err: unknown) => void) | undefined;
  /** The message of the send in progress has started to go out. */
  #dataStarted = false;
  /** Messages sent over this session. */
  messages = 0;

  private constructor(options: SessionOptions, connection: SMTPConnection) {
    this.options = options;
    this.#connection = connection;
    this.#wire = Wire.attach(connection, {
      // RFC 5321 section 4.5.3.2: a timeout for each command's reply (5
      // minutes for MAIL and RCPT, 2 for DATA); 10 for the reply to the
      // end of the data, twice the others.
      replyTimeoutMs: options.commandTimeoutMs,
      dataEndTimeoutMs: 2 * options.commandTimeoutMs,
      onFailure: (failure) => this.#wireFailed(failure),
    });
    // The operation in progress learns of the end after nodemailer has
    // called it back with its own error, if it does (a microtask later).
    const ended = (err?: unknown) => {
      this.#closed = true;
      if (err !== undefined) this.#lastError = err;
      queueMicrotask(() => this.#abort?.(this.#lastError ?? new Error("Connection closed")));
    };
    connection.on("end", () => {
      this.#wire.stop();
      ended();
    });
    connection.on("error", ended);
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
    const session = new SmtpSession(options, connection);
    try {
      await session.#run<void>("CONN", (resolve, reject) => {
        connection.connect((err) => {
          if (err) return reject(err);
          if (!options.auth) return resolve();
          connection.login(options.auth, (err) => err ? reject(err) : resolve());
        });
      });
    } catch (err) {
      session.#closed = true;
      connection.close();
      throw err;
    }
    return session;
  }

  /** The session is encrypted. */
  get secure(): boolean {
    return (this.#connection as unknown as { secure: boolean }).secure === true;
  }

  /** The session is still open. */
  get usable(): boolean {
    return !this.#closed;
  }

  /** The server offered the extension `keyword` (upper case) in its EHLO reply. */
  supports(keyword: string): boolean {
    return this.#wire.offers(keyword);
  }

  /**
   * Sends one message. Refused recipients are an outcome, not an error.
   *
   * @throws {SmtpError} when the sender or the message was refused, or
   * the connection failed (`afterData` when the message had started to go
   * out).
   */
  send(
    envelope: { from: string; to: string[] },
    message: AsyncIterable<Uint8Array>,
    options: SendOptions = {},
  ): Promise<SendOutcome> {
    this.messages++;
    this.#dataStarted = false;
    const wire = this.#wire;
    const started = () => this.#dataStarted = true;
    // nodemailer reads the message only once DATA was accepted; when it has
    // all of it, the reply to the end of the data is due.
    const body = (async function* () {
      started();
      yield* message;
      wire.dataEnd();
    })();
    const stream = Readable.from(body, { objectMode: false });
    return this.#run<SendOutcome>("DATA", (resolve, reject) => {
      wire.mailParameters = options.smtputf8 ? ["SMTPUTF8"] : [];
      const nodemailerEnvelope = { ...envelope, use8BitMime: options.eightBitMime === true };
      this.#connection.send(nodemailerEnvelope, stream, (err, info) => {
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
          reject(err);
          return;
        }
        resolve({
          accepted: (info.accepted ?? []).map(String),
          rejected,
          response: info.response ?? "",
        });
      });
      wire.mailParameters = [];
    }).catch((err) => {
      stream.destroy();
      throw err;
    });
  }

  /** RSET, after a refused transaction, so that the session can be used again. */
  reset(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return this.#run<boolean>("RSET", (resolve) => {
      this.#connection.reset((err) => resolve(!err));
    }).catch(() => false);
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

  /**
   * Runs one operation; a failure of the connection or the wire while it is
   * in progress rejects it, as an SmtpError saying where it happened.
   */
  #run<T>(
    stage: string,
    start: (resolve: (value: T) => void, reject: (err: unknown) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = <V>(then: (value: V) => void) => (value: V) => {
        if (settled) return;
        settled = true;
        this.#abort = undefined;
        then(value);
      };
      const fail = settle((err: unknown) =>
        reject(
          err instanceof SmtpError ? err : new SmtpError(err, stage, {
            afterStarttls: this.#wire.starttlsSent,
            afterData: this.#dataStarted,
          }),
        )
      );
      this.#abort = fail;
      start(settle(resolve), fail);
    });
  }

  /** A reply was late or malformed: the session ends, and what was in progress fails. */
  #wireFailed(failure: WireFailure): void {
    this.#closed = true;
    const details = {
      afterStarttls: this.#wire.starttlsSent,
      afterData: this.#dataStarted,
      malformed: failure.kind === "malformed",
    };
    const seconds = Math.round((failure.limitMs ?? 0) / 100) / 10;
    const text = failure.kind === "timeout"
      ? `no complete reply to ${failure.command} within ${seconds} s (RFC 5321 section 4.5.3.2)`
      : `malformed reply to ${failure.command}: "${failure.reply}" (RFC 5321 section 4.2.1)`;
    const error = new SmtpError(new Error(text), failure.command, details);
    this.#lastError = error;
    this.#connection.close();
    this.#abort?.(error);
  }
}
