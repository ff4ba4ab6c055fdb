/**
 * Two small subclasses of smtp-server's classes, kept in one file so that
 * what Postern changes in the library is visible at a glance:
 *
 * 1. The greeting pause. smtp-server holds every greeting for a fixed
 *    100 ms to catch clients that talk before the banner. That caps a client
 *    that opens one connection per message at about 10 messages/s per
 *    connection. Here the pause is a setting (`smtp.greeting_delay`, 0 by
 *    default, as Postfix's smtpd_greet_pause is off by default).
 * 2. VRFY. smtp-server answers 252 to every VRFY, and a disabled command
 *    becomes "500 command not recognized"; Postern answers as Postfix's
 *    disable_vrfy_command does, 502 5.5.1 (RFC 5321 section 3.5.3 allows a
 *    server not to verify; section 7.3 explains why one would not).
 * 3. A command deadline. smtp-server's socketTimeout only measures silence,
 *    so a client that trickles a byte now and then holds a session forever.
 *    Each command (the DATA transfer included) must arrive complete within
 *    `smtp.command_timeout` of the previous one, or the session ends with
 *    421 4.4.2.
 * 4. Enhanced status codes. smtp-server derives the enhanced code from the
 *    reply number alone (550 is always 5.1.1). A reply whose text already
 *    starts with an enhanced code is sent as it is, so Postern's reply
 *    values say exactly what they mean (550 5.7.1, 421 4.7.0, 552 5.3.4).
 *
 * @module
 */

import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { ENHANCED_CODE_PREFIX } from "./reply.ts";

/** Options of {@linkcode PosternSmtpServer} beyond smtp-server's. */
export interface PosternServerOptions extends SMTPServerOptions {
  /** Milliseconds to wait before the 220 greeting; 0 sends it at once. */
  greetingDelayMs: number;
  /** Milliseconds within which each command must arrive complete. */
  commandTimeoutMs: number;
}

class PosternConnection extends SMTPConnection {
  greetingDelayMs = 0;
  commandTimeoutMs = 0;
  #deadline: ReturnType<typeof setTimeout> | undefined;

  #armDeadline(): void {
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    if (this.commandTimeoutMs <= 0 || this._closed || this._closing) return;
    this.#deadline = setTimeout(() => {
      this.#deadline = undefined;
      this.send(421, `4.4.2 ${this.name} Error: command timeout exceeded, closing connection`);
    }, this.commandTimeoutMs);
    (this.#deadline as { unref?: () => void }).unref?.();
  }

  override connectionReady(next?: () => void): void {
    this.#armDeadline();
    super.connectionReady(next);
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    this.#armDeadline();
    super._onCommand(command, callback);
  }

  override _onClose(): void {
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    this.#deadline = undefined;
    super._onClose();
  }

  override init(): void {
    this._setListeners(() => {
      if (this.greetingDelayMs <= 0) {
        this.connectionReady();
        return;
      }
      const timer = setTimeout(() => this.connectionReady(), this.greetingDelayMs);
      // Do not keep the process alive for a pending greeting.
      (timer as { unref?: () => void }).unref?.();
    });
  }

  /** VRFY is answered, never honoured: it would let anyone harvest addresses. */
  override handler_VRFY(_command: unknown, callback: () => void): void {
    this.send(502, "5.5.1 VRFY command is disabled");
    callback();
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (typeof data === "string" && ENHANCED_CODE_PREFIX.test(data)) {
      super.send(code, data, false);
    } else {
      super.send(code, data, context);
    }
  }
}

/** smtp-server with Postern's connection class. */
export class PosternSmtpServer extends SMTPServer {
  #greetingDelayMs: number;
  #commandTimeoutMs: number;

  /** Creates the server; see {@linkcode PosternServerOptions}. */
  constructor(options: PosternServerOptions) {
    const { greetingDelayMs, commandTimeoutMs, ...rest } = options;
    super(rest);
    this.#greetingDelayMs = greetingDelayMs;
    this.#commandTimeoutMs = commandTimeoutMs;
  }

  /** Changes the greeting pause and command deadline of the next connections. */
  setTimings(greetingDelayMs: number, commandTimeoutMs: number): void {
    this.#greetingDelayMs = greetingDelayMs;
    this.#commandTimeoutMs = commandTimeoutMs;
  }

  /** Same as smtp-server's connect(), with {@linkcode PosternConnection}. */
  override connect(socket: Socket | TLSSocket, socketOptions?: unknown): void {
    const connection = new PosternConnection(
      this,
      socket,
      socketOptions as ConstructorParameters<typeof SMTPConnection>[2],
    );
    connection.greetingDelayMs = this.#greetingDelayMs;
    connection.commandTimeoutMs = this.#commandTimeoutMs;
    this.connections.add(connection);
    connection.on("error", (err: Error) => this._onError(err));
    connection.on("connect", (data) => this._onClientConnect(data));
    connection.init();
  }
}
