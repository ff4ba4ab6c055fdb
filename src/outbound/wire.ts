/**
 * What goes over one SMTP connection, seen from inside nodemailer's
 * SMTPConnection: each command it writes and each reply it reads. The
 * session learns from it, without matching error texts, whether STARTTLS
 * was sent and what the server offers; every reply is held to a deadline
 * and checked for a well-formed code before nodemailer acts on it.
 *
 * nodemailer has no public hook for either direction, so the wire wraps two
 * methods of the connection object: `_sendCommand` (every command line)
 * and `_onData` (every chunk read, before and after STARTTLS). `attach`
 * checks that both exist, so an upgrade that renames them fails at the
 * first connection, and the outbound tests with it.
 *
 * @module
 */

/** Why the wire gave up on the connection. */
export interface WireFailure {
  /** A reply took too long, or a reply was not a well-formed SMTP reply. */
  kind: "timeout" | "malformed";
  /** The command the reply belonged to ("greeting" before the first). */
  command: string;
  /** The malformed reply's line (printable, shortened). */
  reply?: string;
  /** The deadline that passed, in ms. */
  limitMs?: number;
}

/** Settings of a wire. */
export interface WireOptions {
  /** Time allowed for each reply, from the command or the reply before it. */
  replyTimeoutMs: number;
  /** Time allowed for the reply to the end of the data. */
  dataEndTimeoutMs: number;
  /** Called once, when a reply is late or malformed; the caller closes the connection. */
  onFailure: (failure: WireFailure) => void;
}

/** The two methods of nodemailer's SMTPConnection the wire wraps. */
interface Tappable {
  _sendCommand(str: string, logStr?: string): void;
  _onData(chunk: Uint8Array): void;
}

/** The end of the data, as the pending entry its reply answers. */
const DATA_END = "end of data";
/** Longest part of a reply line kept: the code and an EHLO keyword. */
const KEPT = 256;
const VERBS = new Set(["EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "RSET"]);

/** Observes, times and checks the dialogue of one nodemailer connection. */
export class Wire {
  /** STARTTLS was sent (RFC 3207): a failure from here on is a failed handshake. */
  starttlsSent = false;
  #options: WireOptions;
  #extensions = new Set<string>();
  /** Commands (verbs) whose replies have not come yet, oldest first. */
  #pending: string[] = [];
  /** The next command answers a 334 challenge: AUTH data, never kept. */
  #challenge = false;
  /** MAIL FROM parameters to add (SMTPUTF8 for ASCII addresses, which nodemailer omits). */
  #mailParameters: string[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  // The reply being read: its first line's code, the start of the current
  // line, and the keywords of an EHLO reply.
  #code: string | undefined;
  #line = "";
  #keywords: string[] = [];

  private constructor(options: WireOptions) {
    this.#options = options;
  }

  /** Wraps `connection`'s command and data methods; call before `connect()`. */
  static attach(connection: object, options: WireOptions): Wire {
    const target = connection as Partial<Tappable>;
    if (typeof target._sendCommand !== "function" || typeof target._onData !== "function") {
      throw new TypeError(
        "Cannot watch the SMTP dialogue: nodemailer's SMTPConnection has no _sendCommand or _onData",
      );
    }
    const wire = new Wire(options);
    const send = target._sendCommand.bind(connection);
    const receive = target._onData.bind(connection);
    target._sendCommand = (str, logStr) => send(wire.#sent(str), logStr);
    target._onData = (chunk) => wire.#received(chunk, receive);
    return wire;
  }

  /** The server offered `keyword` in its last EHLO reply (upper case). */
  offers(keyword: string): boolean {
    return this.#extensions.has(keyword);
  }

  /** MAIL FROM parameters to add to the next MAIL command that lacks them. */
  set mailParameters(parameters: string[]) {
    this.#mailParameters = parameters;
  }

  /** The data has been handed to the socket: the reply to its end is due. */
  dataEnd(): void {
    if (this.#stopped) return;
    this.#pending.push(DATA_END);
    this.#arm();
  }

  /** Stops the deadline; the connection is closed. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #sent(str: string): string {
    if (this.#stopped) return str;
    const verb = this.#challenge ? "AUTH" : (/^[A-Za-z]+/.exec(str)?.[0] ?? str).toUpperCase();
    this.#challenge = false;
    let line = str;
    if (verb === "MAIL") {
      for (const parameter of this.#mailParameters) {
        if (!new RegExp(`\\s${parameter}(?:\\s|$)`, "i").test(line)) line += ` ${parameter}`;
      }
    }
    if (verb === "STARTTLS") this.starttlsSent = true;
    this.#pending.push(VERBS.has(verb) ? verb : verb === "." ? DATA_END : "command");
    if (this.#pending.length === 1) this.#arm();
    return line;
  }

  /**
   * Reads `chunk` reply by reply and hands nodemailer what it may act on:
   * everything, or the replies before a malformed one (then the failure is
   * reported and the rest withheld).
   */
  #received(chunk: Uint8Array, receive: (chunk: Uint8Array) => void): void {
    if (this.#stopped) return receive(chunk);
    let start = 0;
    // Where the reply being read began in this chunk (0: in an earlier one).
    let replyStart = 0;
    for (let end = chunk.indexOf(0x0a); end >= 0; end = chunk.indexOf(0x0a, start)) {
      if (this.#code === undefined && this.#line === "") replyStart = start;
      this.#line += latin1(chunk, start, Math.min(end, start + KEPT - this.#line.length));
      start = end + 1;
      const line = this.#line.replace(/\r$/, "");
      this.#line = "";
      const outcome = this.#lineRead(line);
      if (typeof outcome === "object") {
        // The replies before it first, then the failure (which closes the
        // connection, after which nodemailer reads nothing).
        if (replyStart > 0) receive(chunk.subarray(0, replyStart));
        this.#fail(outcome);
        return;
      }
      // After the 220 to STARTTLS what follows on the plain socket is
      // nobody's reply (nodemailer discards it, RFC 3207 section 4.2).
      if (outcome === "tls") return receive(chunk);
    }
    if (start < chunk.length && this.#line.length < KEPT) {
      this.#line += latin1(chunk, start, Math.min(chunk.length, start + KEPT - this.#line.length));
    }
    receive(chunk);
  }

  /** One complete line of a reply; what it means for the chunk (a failure: malformed). */
  #lineRead(line: string): "more" | "tls" | WireFailure {
    // nodemailer skips an empty line between replies; inside one it ends it.
    if (line.trim() === "" && this.#code === undefined) return "more";
    // RFC 5321 section 4.2: Reply-code is 2-5, then two digits; a hyphen
    // goes on to the next line, a space (or nothing) ends the reply. The
    // same test as nodemailer's (/^\d+-/) decides where the reply ends.
    const continues = /^\d+-/.test(line);
    const wellFormed = /^[2-5]\d\d(?:[ -]|$)/.test(line) &&
      (this.#code === undefined || line.startsWith(this.#code));
    this.#code ??= line.slice(0, 3);
    const command = this.#pending[0] ?? "greeting";
    if (!wellFormed) {
      // RFC 5321 section 4.2.1: a code out of range is a fatal error, and
      // every line of a multiline reply carries the same code.
      return { kind: "malformed", command, reply: printable(line) };
    }
    if (command === "EHLO") {
      const keyword = /^\d{3}[ -]([A-Za-z0-9][A-Za-z0-9-]*)/.exec(line)?.[1];
      if (keyword !== undefined && this.#keywords.length < 100) {
        this.#keywords.push(keyword.toUpperCase());
      }
    }
    if (continues) return "more";
    return this.#replyRead(this.#code);
  }

  #replyRead(code: string): "more" | "tls" {
    this.#code = undefined;
    const command = this.#pending.shift();
    const keywords = this.#keywords.splice(0);
    const positive = code.startsWith("2");
    this.#challenge = code === "334";
    if (command === "EHLO" && positive) {
      // The first line is the greeting of the reply, not a keyword.
      this.#extensions = new Set(keywords.slice(1));
    }
    if (command === "HELO" && positive) this.#extensions = new Set();
    if (this.#pending.length > 0) this.#arm();
    else this.#disarm();
    if (command === "STARTTLS" && positive) {
      this.#extensions = new Set();
      return "tls";
    }
    return "more";
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const command = this.#pending[0] ?? "greeting";
    const ms = command === DATA_END ? this.#options.dataEndTimeoutMs : this.#options.replyTimeoutMs;
    this.#timer = setTimeout(() => this.#fail({ kind: "timeout", command, limitMs: ms }), ms);
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fail(failure: WireFailure): void {
    if (this.#stopped) return;
    this.stop();
    this.#options.onFailure(failure);
  }
}

function latin1(chunk: Uint8Array, from: number, to: number): string {
  return to > from ? String.fromCharCode(...chunk.subarray(from, to)) : "";
}

/** A reply line as an error may quote it: printable ASCII, at most 80 characters. */
function printable(line: string): string {
  const shown = line.slice(0, 80).replace(/[^\x20-\x7e]/g, "?");
  return line.length > 80 ? `${shown}...` : shown;
}
