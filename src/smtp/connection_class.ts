/**
 * Postern's subclass of smtp-server's connection: items 1 to 11 of the
 * list in `server_class.ts` (greeting pause, VRFY, deadlines, enhanced
 * codes, AUTH in EHLO, fair service, the hard error limit, the command
 * gate, pipelined messages, QUIT, and the logging of every error reply).
 *
 * @module
 */

import type { SMTPServerAddress, SMTPServerSession } from "smtp-server";
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { domainAsSent } from "./address_as_sent.ts";
import { gateCommand, PROTOCOL_SYNC, verbOf } from "./command_gate.ts";
import { SessionDeadline } from "./deadline.ts";
import { ErrorCounter, errorLimitReply } from "./error_limit.ts";
import { takeHandlerMark } from "./handler_refusals.ts";
import { InputTracker, type TrackedParser } from "./input_tracker.ts";
import { NAMELESS, offeredIn, unsupportedParameter } from "./parameters.ts";
import { libraryReply, type Stage, stageOf } from "./library_replies.ts";
import { ENHANCED_CODE_PREFIX, reply, replyText, type SmtpReply } from "./reply.ts";

/** Settings of each connection; a policy reload changes those of the next ones. */
export interface ConnectionSettings {
  /** Milliseconds to wait before the 220 greeting; 0 sends it at once. */
  greetingDelayMs: number;
  /** Milliseconds within which each command must arrive complete; 0: no limit. */
  commandTimeoutMs: number;
  /** Bytes per second a message must arrive at, at least. */
  minDataRate: number;
  /** Refused or bad commands that end a session; 0: no limit. */
  hardErrorLimit: number;
}

/** What a connection reports beyond smtp-server's handlers, for the mail log. */
export interface SessionEvents {
  /**
   * An error reply that no handler logged: a refusal of the connection
   * itself, or one smtp-server made up; `to` is the recipient refused.
   */
  refused(
    session: SMTPServerSession,
    stage: string,
    reason: string,
    reply: SmtpReply,
    to?: string,
  ): void;
  /** The session reached the error limit and ends with `reply`. */
  errorLimit(session: SMTPServerSession, errors: number, reply: SmtpReply): void;
  /**
   * The session's state was reset (RSET, HELO or EHLO, STARTTLS, a message
   * answered; RFC 5321 sections 4.1.1.1 and 4.1.1.5): a transaction still
   * open ended without a message.
   */
  reset(session: SMTPServerSession): void;
}

/** The input tracker of each parser (parsers are created in the base constructor). */
const trackers = new WeakMap<object, InputTracker>();

/**
 * smtp-server's connection with Postern's changes (listed in
 * `server_class.ts`); `PosternSmtpServer` there creates one per
 * accepted socket, and sets `settings` and `events` before `init()`.
 */
export class PosternConnection extends SMTPConnection {
  settings: ConnectionSettings = {
    greetingDelayMs: 0,
    commandTimeoutMs: 0,
    minDataRate: 1,
    hardErrorLimit: 0,
  };
  events: SessionEvents | undefined;
  #deadline: SessionDeadline | undefined;
  #errors = new ErrorCounter(0);
  #hideAuth = false;
  /** The command being dispatched synchronously, if any. */
  #dispatching: string | undefined;
  /** The stage of the command being handled (of DATA until its message is answered). */
  #stage: Stage | undefined;
  /** The reply being sent was logged already. */
  #noted = false;

  override _createParser(): ReturnType<SMTPConnection["_createParser"]> {
    const parser = super._createParser();
    trackers.set(parser, new InputTracker(parser as unknown as TrackedParser));
    return parser;
  }

  override init(): void {
    this.#errors = new ErrorCounter(this.settings.hardErrorLimit);
    // The hard error limit replaces smtp-server's cap on commands before
    // AUTH (its option cannot switch it off: false means 10).
    this._maxAllowedUnauthenticatedCommands = false;
    this.#deadline = new SessionDeadline(this.settings, () => {
      const stage = this.#inData() ? "data" : "command";
      const r = reply(
        421,
        "4.4.2",
        `${this.name} Error: command timeout exceeded, closing connection`,
      );
      this.#refuse(stage, "timeout", r);
    });
    this._setListeners(() => {
      if (this.settings.greetingDelayMs <= 0) {
        this.connectionReady();
        return;
      }
      const timer = setTimeout(() => this.connectionReady(), this.settings.greetingDelayMs);
      // Do not keep the process alive for a pending greeting.
      (timer as { unref?: () => void }).unref?.();
    });
  }

  override _parseAddressCommand(
    rawName: string,
    rawCommand: Buffer | string,
  ): ReturnType<SMTPConnection["_parseAddressCommand"]> {
    const parsed = super._parseAddressCommand(rawName, rawCommand);
    if (!parsed) return parsed;
    const line = String(rawCommand);
    // An A-label stays an A-label (address_as_sent.ts).
    if (parsed.address) parsed.address = domainAsSent(parsed.address, line);
    // smtp-server drops a parameter with no keyword (" =x"), which RFC
    // 5321 section 4.1.2 does not allow; kept under the empty name, it is
    // refused as a syntax error (parameters.ts).
    if (/>.*\s=/.test(line)) {
      const args = typeof parsed.args === "object" && parsed.args ? parsed.args : {};
      parsed.args = { ...args, [NAMELESS]: true };
    }
    return parsed;
  }

  /**
   * smtp-server checks some parameters before Postern sees the command: a
   * DSN parameter without a value got `501`, REQUIRETLS on a plain
   * connection `530` ("authentication required" in the mail log), as if
   * the extension were there to be used right. A command with a parameter
   * Postern does not take at all skips those checks and reaches
   * `Intake.mailFrom`/`rcptTo`, which refuse it with `555 5.5.4` naming it
   * (parameters.ts).
   */
  override _rejectInvalidParams(
    parsed: Parameters<SMTPConnection["_rejectInvalidParams"]>[0],
    keys: Parameters<SMTPConnection["_rejectInvalidParams"]>[1],
    callback: () => void,
  ): boolean {
    if (this.#unsupported(parsed)) return false;
    return super._rejectInvalidParams(parsed, keys, callback);
  }

  override _validateMailParams(
    parsed: Parameters<SMTPConnection["_validateMailParams"]>[0],
  ): ReturnType<SMTPConnection["_validateMailParams"]> {
    if (this.#unsupported(parsed)) return null;
    return super._validateMailParams(parsed);
  }

  override _applyMailParams(parsed: Parameters<SMTPConnection["_applyMailParams"]>[0]): void {
    // Not checked (above), so not applied either: a bare BODY would throw
    // in smtp-server's code there (451 for a command that can never pass),
    // and a refused MAIL FROM must leave nothing in the session's envelope.
    if (this.#unsupported(parsed)) return;
    super._applyMailParams(parsed);
  }

  #unsupported(parsed: SMTPServerAddress): boolean {
    const verb = this.#dispatching === "RCPT" ? "rcpt" : "mail";
    return unsupportedParameter(verb, parsed, offeredIn(this.session)) !== undefined;
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    // The client waits for our reply now, for minutes if need be (RFC 5321
    // section 4.5.3.2); no deadline of ours runs until the command is done.
    this.#deadline?.pause();
    // The hard error limit counts unrecognized commands with the others.
    this._unrecognizedCommands = 0;
    const next = callback ?? (() => {});
    const resume = () => {
      if (!this.#inData()) this.#stage = undefined;
      this.#owe();
      // The next command waits for the next turn of the event loop, so
      // that other clients are served between any two commands of one. A
      // handler that answered from a promise continuation would resume the
      // parser inside the microtask queue, which never lets the event loop
      // serve anyone else; one that answered at once (NOOP, RSET, EHLO)
      // would let smtp-server run 100 commands before it yields, and on
      // Deno that kept a bystander waiting for a whole flood.
      setImmediate(next);
    };
    const open = this._ready && !this._upgrading && !this._server._closeTimeout;
    // A pending handler is smtp-server's SASL exchange: the line answers a
    // 334 challenge and holds credentials.
    const answering = Boolean(this._nextHandler);
    this.#stage = stageOf(answering ? undefined : verbOf(command), answering);
    const refusal = open
      ? gateCommand(command, {
        answering,
        lineTooLong: Boolean(this._parser && trackers.get(this._parser)?.lineTooLong),
        transactionOpen: Boolean(this.session.envelope?.mailFrom),
        // Of the MAIL FROM that opened the transaction: smtp-server sets the
        // envelope's flag before Postern's checks, and a MAIL they refused
        // left it set for the next one.
        smtputf8: declaredSmtputf8(this.session.envelope?.mailFrom),
        authReady: this.#authReady(),
      })
      : undefined;
    if (refusal) {
      // The exchange ends with the refusal (RFC 4954 section 4).
      if (answering) this._nextHandler = false;
      this.#refuse(refusal.stage, refusal.reason, refusal.reply, refusal.enhanced, refusal.to);
      if (refusal.close) this.close();
      this._whenWritable(resume);
      return;
    }
    this.#dispatching = command.toString("latin1").trim().split(/\s+/)[0]!.toUpperCase();
    try {
      super._onCommand(command, resume);
    } finally {
      this.#dispatching = undefined;
    }
  }

  /**
   * True when smtp-server would take the credentials of an AUTH line: after
   * EHLO, with AUTH offered, before a login, and not refused with 538 (the
   * replies that come first keep coming first).
   */
  #authReady(): boolean {
    const options = this._server.options;
    return Boolean(this.hostNameAppearsAs) && this._isSupported("AUTH") && !this.session.user &&
      (this.secure || options.allowInsecureAuth || options.hideSTARTTLS ||
        !this._isSupported("STARTTLS"));
  }

  /**
   * Sends a refusal that the connection itself decided on, logged as one;
   * `enhanced` false for a reply that carries no enhanced code.
   */
  #refuse(stage: Stage, reason: string, r: SmtpReply, enhanced = true, to?: string): void {
    this.events?.refused(this.session, stage, reason, r, to);
    this.#noted = true;
    if (enhanced) this.send(r.code, replyText(r));
    else this.send(r.code, r.text, false);
  }

  /** True while the parser reads a message (after DATA's 354). */
  #inData(): boolean {
    const parser = this._parser;
    return Boolean(parser && parser._dataMode);
  }

  /** What the client owes now that a command is done: the next one, or the message. */
  #owe(): void {
    if (this._closing || this._closed) return;
    const parser = this._parser;
    if (parser && parser._dataMode) {
      this.#deadline?.awaitData(
        () => parser.dataBytes,
        () => parser._dataMode && !parser.isClosed,
      );
    } else {
      this.#deadline?.awaitCommand();
    }
  }

  /**
   * smtp-server resets the session on its own (RSET is answered without a
   * handler): the transaction it drops is ended here, so what it holds (a
   * spare spool file) is given back at once, not at the next MAIL FROM or
   * the end of the session.
   */
  override _resetSession(): void {
    super._resetSession();
    this.events?.reset(this.session);
  }

  override _onClose(): void {
    this.#deadline?.stop();
    super._onClose();
  }

  /**
   * RFC 5321 section 4.1.1.10: the server sends 221, then closes the
   * transmission channel. smtp-server only half-closes it and keeps the
   * socket (its descriptor and the client's connection slot) reading and
   * discarding until the client closes or 5 s pass; a client that resets
   * the connection, as many do after QUIT, costs an error object besides.
   * Nothing a client sends after QUIT can be answered (RFC 2920 section
   * 3.1 makes QUIT the last command of a group), so the socket is closed
   * once the 221 is in the kernel: at once on a plain connection whose
   * writes all went out (close() sends the FIN after them), else once the
   * FIN has gone (`finish`; on TLS the close_notify and the record of the
   * 221 go through the TLS layer first). Closing at once beats the
   * client's reset, which Deno turned into an error whose stack node's
   * stream code reads (30 us of the main thread per session there).
   * Only here: a 421 may reach a client that is still sending, and a close
   * with its input unread would reset the connection before the 421 got
   * there.
   */
  override handler_QUIT(command: Buffer, callback: () => void): void {
    super.handler_QUIT(command, callback);
    const socket = this._socket;
    if (socket.destroyed || this._upgrading) return;
    if (socket.writableFinished || (!this.secure && socket.writableLength === 0)) {
      socket.destroy();
    } else socket.once("finish", () => socket.destroy());
  }

  /** VRFY is answered, never honoured: it would let anyone harvest addresses. */
  override handler_VRFY(_command: unknown, callback: () => void): void {
    this.send(502, "5.5.1 VRFY command is disabled");
    callback();
  }

  /**
   * EHLO without AUTH where AUTH would be refused with 538 (before TLS on a
   * listener that allows no plain-text passwords): RFC 4954 section 4 and
   * RFC 8314 want passwords only over an encrypted session, and a
   * client offered AUTH sends its password before it learns of the 538.
   */
  override handler_EHLO(command: Buffer, callback: () => void): void {
    const options = this._server.options;
    this.#hideAuth = !this.secure && !options.allowInsecureAuth && !options.hideSTARTTLS &&
      this._isSupported("STARTTLS");
    let inside = true;
    let answered = false;
    try {
      super.handler_EHLO(command, () => {
        if (inside) answered = true;
        else callback();
      });
    } finally {
      inside = false;
      this.#hideAuth = false;
    }
    if (answered) callback();
  }

  override _isSupported(command: string): boolean {
    if (this.#hideAuth && command.trim().toUpperCase() === "AUTH") return false;
    return super._isSupported(command);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    const noted = this.#noted;
    this.#noted = false;
    if (
      this.#dispatching === "DATA" && code >= 400 && code !== 421 &&
      this._parser && trackers.get(this._parser)?.pending()
    ) {
      this.#dispatching = undefined;
      this.events?.refused(this.session, "data", "pipelined_message", PROTOCOL_SYNC);
      super.send(PROTOCOL_SYNC.code, replyText(PROTOCOL_SYNC), false);
      this.close();
      return;
    }
    let text = typeof data === "string" ? data : "";
    const prefixed = typeof data === "string" && ENHANCED_CODE_PREFIX.test(data);
    if (code >= 400 && typeof data === "string") {
      // A handler's refusal is the handler's to log (it says why); the
      // mark is taken with the first error reply after it.
      const logged = takeHandlerMark(this.session, code) || noted;
      if (prefixed) {
        if (!logged) this.#noteLibrary(code, data.slice(0, data.indexOf(" ")), data, true);
        super.send(code, data, false);
      } else {
        const enhanced = this._getEnhancedStatusCode(code, context);
        const r = logged
          ? reply(code, enhanced, data)
          : this.#noteLibrary(code, enhanced, data, false);
        text = r.enhanced ? replyText(r) : r.text;
        super.send(code, text, false);
      }
    } else if (prefixed) {
      super.send(code, data, false);
    } else {
      super.send(code, data, context);
    }
    if (!this._handlerPending && !this._dataStream && !this.#inData()) {
      // The command or message answered is done with.
      this.#stage = undefined;
    }
    if (code === 421) return;
    // A reply outside a command handler (the greeting, the reply to a
    // message) leaves the client owing the next command.
    if (!this._handlerPending && !this._dataStream) this.#deadline?.awaitCommand();
    if (this.#errors.count(code, text) && !this._closing && !this._closed) {
      const r = errorLimitReply(this.name);
      this.events?.errorLimit(this.session, this.#errors.errors, r);
      super.send(r.code, replyText(r), false);
    }
  }

  /**
   * Logs an error reply that nobody logged (smtp-server's own, mostly) and
   * returns it as it is to be sent; `prefixed` when `text` starts with its
   * enhanced code `enhanced` already.
   */
  #noteLibrary(code: number, enhanced: string, text: string, prefixed: boolean): SmtpReply {
    const stage = this.#stage ?? (this.#inData() ? "data" : "command");
    const body = prefixed ? text.slice(enhanced.length + 1) : text;
    const { reply: r, reason } = libraryReply(code, enhanced, body, stage);
    this.events?.refused(this.session, stage, reason, r);
    return r;
  }
}

/** The transaction's MAIL FROM carried the SMTPUTF8 parameter (RFC 6531 section 3.4). */
function declaredSmtputf8(mailFrom: SMTPServerAddress | false | undefined): boolean {
  const args: unknown = mailFrom ? mailFrom.args : undefined;
  return typeof args === "object" && args !== null && "SMTPUTF8" in args;
}
