/**
 * Two small subclasses of smtp-server's classes: the server here, its
 * connection in `connection_class.ts`. What Postern changes in the library
 * is listed here, so that it is visible at a glance:
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
 * 3. Deadlines (deadline.ts). smtp-server's socketTimeout only measures
 *    silence, so a client that trickles a byte now and then holds a session
 *    forever. A command must arrive within `smtp.command_timeout`, a message
 *    at `smtp.min_data_rate` at least, or the session ends with 421 4.4.2;
 *    while Postern works on what the client sent, no deadline runs.
 * 4. Enhanced status codes. smtp-server derives the enhanced code from the
 *    reply number alone (550 is always 5.1.1). A reply whose text already
 *    starts with an enhanced code is sent as it is, so Postern's reply
 *    values say exactly what they mean (550 5.7.1, 421 4.7.0, 552 5.3.4).
 * 5. AUTH is listed in the EHLO reply only where it can be used: smtp-server
 *    lists it before STARTTLS too and refuses it afterwards, by which time a
 *    client has sent the password in clear text.
 * 6. Fair service (item 7 of smtp-server's gotchas in STYLE.md): every
 *    command, answered at once or from a promise continuation, resumes the
 *    parser only on the next turn of the event loop, so one client
 *    pipelining thousands of commands cannot keep every other client waiting.
 * 7. A hard error limit (`smtp.hard_error_limit`, error_limit.ts), which
 *    replaces smtp-server's caps of 10 unrecognized commands and of 10
 *    commands before AUTH (on submission, where a client may well send
 *    EHLO, STARTTLS, EHLO, RSET and NOOP before it logs in).
 * 8. Refused before smtp-server reads them (command_gate.ts): invalid
 *    UTF-8, non-ASCII addresses without SMTPUTF8, AUTH responses that are
 *    no base64, recipients with an `@` in a quoted local part, lines over
 *    `smtp.max_command_length` (500 5.5.2, and the session goes on;
 *    smtp-server ended it with 421; input_tracker.ts).
 * 9. A message pipelined behind a refused DATA, or the chunk of any BDAT,
 *    is never run as commands.
 * 10. QUIT closes the connection. smtp-server half-closes after its 221
 *    and reads on for up to 5 s, until the client closes its side; Postern
 *    closes the socket once the 221 and its FIN are out, as Postfix and
 *    chasquid do (RFC 5321 section 4.1.1.10).
 * 11. Every error reply is logged (refusal_log.ts), whoever made it up:
 *    Postern's handlers log their own (handler_refusals.ts), the connection
 *    the rest, smtp-server's own included (library_replies.ts, which also
 *    corrects their enhanced codes where the RFCs say otherwise).
 * 12. The listener watch's probes (listener_watch.ts) are dropped as they
 *    are accepted.
 * 13. A listener that only offers STARTTLS builds its TLS contexts at the
 *    first handshake, not when it starts or its certificates change (see
 *    `updateSecureContext`).
 *
 * @module
 */

import type { Socket } from "node:net";
import type { SecureContext, TLSSocket } from "node:tls";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import type { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import {
  type ConnectionSettings,
  PosternConnection,
  type SessionEvents,
} from "./connection_class.ts";
import { markingHandlers } from "./handler_refusals.ts";

export type { ConnectionSettings, SessionEvents } from "./connection_class.ts";

/** Options of {@linkcode PosternSmtpServer} beyond smtp-server's. */
export interface PosternServerOptions extends SMTPServerOptions, ConnectionSettings {
  events?: SessionEvents | undefined;
}

/** smtp-server with Postern's connection class. */
export class PosternSmtpServer extends SMTPServer {
  #settings: ConnectionSettings;
  #events: SessionEvents | undefined;

  /** Creates the server; see {@linkcode PosternServerOptions}. */
  constructor(options: PosternServerOptions) {
    const { greetingDelayMs, commandTimeoutMs, minDataRate, hardErrorLimit, events, ...rest } =
      options;
    super(markingHandlers(rest));
    this.#settings = { greetingDelayMs, commandTimeoutMs, minDataRate, hardErrorLimit };
    this.#events = events;
  }

  /** Recognises the listener watch's probes (listener_watch.ts), dropped as accepted. */
  probes: { claim(socket: Socket): boolean } | undefined;

  /** smtp-server's first look at an accepted socket; a probe goes no further. */
  override _acceptSocket(socket: Socket, handshake: boolean): (() => void) | false {
    if (!this.probes?.claim(socket)) return super._acceptSocket(socket, handshake);
    socket.on("error", () => {});
    socket.destroy();
    return false;
  }

  /** Changes the settings of the next connections. */
  setConnectionSettings(settings: ConnectionSettings): void {
    this.#settings = { ...settings };
  }

  /**
   * smtp-server builds its TLS contexts here, when it is created and when
   * its certificates change. A listener that only offers STARTTLS builds
   * them at its first handshake instead: the first context a process makes
   * sets up its TLS library (on Bun about 1.5 MB of heap and 1.2 MB of code
   * resident; issue 17), which a server that has had no TLS session yet
   * does not need. The certificates were checked when they were loaded. An
   * implicit-TLS listener builds them at once, as smtp-server does.
   */
  override updateSecureContext(
    options?: Parameters<SMTPServer["updateSecureContext"]>[0],
  ): void {
    // Called by smtp-server's constructor: nothing of this class's own is set up yet.
    if (options) Object.assign(this.options, options);
    if (this.options.secure) return super.updateSecureContext();
    const onFirstUse: Map<string, SecureContext> = new ContextsOnFirstUse(() => {
      try {
        super.updateSecureContext();
        return this.secureContext;
      } catch (err) {
        // smtp-server put in a new map before the build threw: without this
        // one back, every later handshake would get that empty map.
        this.secureContext = onFirstUse;
        throw err;
      }
    }, (err) => this.emit("error", err));
    this.secureContext = onFirstUse;
  }

  /** Same as smtp-server's connect(), with {@linkcode PosternConnection}. */
  override connect(socket: Socket | TLSSocket, socketOptions?: unknown): void {
    const connection = new PosternConnection(
      this,
      socket,
      socketOptions as ConstructorParameters<typeof SMTPConnection>[2],
    );
    connection.settings = { ...this.#settings };
    connection.events = this.#events;
    this.connections.add(connection);
    connection.on("error", (err: Error) => this._onError(err));
    connection.on("connect", (data) => this._onClientConnect(data));
    connection.init();
  }
}

/**
 * smtp-server's map of TLS contexts (by server name, `*` the default),
 * built by `build` when a handshake first asks for one. A build that fails
 * is reported to `failed` and tried again at the next handshake, which
 * gets no context meanwhile and fails; the listener goes on.
 */
class ContextsOnFirstUse extends Map<string, SecureContext> {
  #build: () => Map<string, SecureContext>;
  #failed: (err: unknown) => void;
  #built: Map<string, SecureContext> | undefined;

  constructor(build: () => Map<string, SecureContext>, failed: (err: unknown) => void) {
    super();
    this.#build = build;
    this.#failed = failed;
  }

  override get(name: string): SecureContext | undefined {
    if (this.#built === undefined) {
      try {
        this.#built = this.#build();
      } catch (err) {
        this.#failed(err);
        return undefined;
      }
    }
    return this.#built.get(name);
  }
}
