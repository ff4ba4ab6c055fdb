/**
 * A raw SMTP client for end-to-end tests that need every reply line (the
 * lines of a multi-line EHLO reply, a flood of pipelined replies) and
 * exact bytes on the wire (invalid UTF-8), which swaks and nodemailer
 * cannot send.
 *
 * @module
 */

import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

/** Reply lines as they arrive, with the time each arrived. */
export class LineClient {
  /** Every reply line so far (CRLF removed, latin1 decoded). */
  readonly lines: string[] = [];
  /** `performance.now()` when each line arrived. */
  readonly times: number[] = [];
  /** Resolves when the server closed the connection. */
  readonly closed: Promise<void>;
  #socket: Socket | TLSSocket;
  #partial = "";
  #waiters: Array<() => void> = [];
  #isClosed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.#isClosed = true;
        resolve();
        this.#wake();
      });
    });
    socket.on("error", () => {});
    this.#listen(socket);
  }

  /** Connects to `host:port` and waits until the TCP connection is up. */
  static async open(host: string, port: number): Promise<LineClient> {
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    return new LineClient(socket);
  }

  /** True once the server closed the connection. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Writes a string (UTF-8) or exact bytes. */
  write(data: string | Uint8Array): void {
    this.#socket.write(data);
  }

  /**
   * Waits until `count` lines have arrived in all (or the connection
   * closed, or `timeoutMs` passed); returns the lines.
   */
  async waitForLines(count: number, timeoutMs = 20_000): Promise<string[]> {
    const deadline = performance.now() + timeoutMs;
    while (this.lines.length < count && !this.#isClosed && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - performance.now()));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.lines;
  }

  /** Waits for a line matching `pattern` after index `from`; returns it or undefined. */
  async waitFor(pattern: RegExp, from = 0, timeoutMs = 20_000): Promise<string | undefined> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const found = this.lines.slice(from).find((l) => pattern.test(l));
      if (found !== undefined || this.#isClosed) return found;
      await this.waitForLines(this.lines.length + 1, deadline - performance.now());
    }
    return undefined;
  }

  /** Sends a command and returns the last line of its reply ("(closed)" if none came). */
  async command(line: string | Uint8Array): Promise<string> {
    const from = this.lines.length;
    this.write(typeof line === "string" ? line + "\r\n" : line);
    const reply = await this.waitFor(/^\d{3} /, from);
    return reply ?? "(closed)";
  }

  /** Upgrades the connection to TLS (after the server's 220 to STARTTLS). */
  async startTls(): Promise<void> {
    const plain = this.#socket as Socket;
    plain.removeAllListeners("data");
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    secure.on("error", () => {});
    this.#socket = secure;
    this.#listen(secure);
  }

  /** The SHA-256 fingerprint of the server's certificate, once in TLS. */
  peerFingerprint256(): string | undefined {
    const socket = this.#socket as Partial<TLSSocket>;
    return socket.getPeerCertificate?.()?.fingerprint256;
  }

  /** Closes the connection from this side. */
  close(): void {
    this.#socket.destroy();
  }

  #listen(socket: Socket | TLSSocket): void {
    socket.on("data", (chunk: Uint8Array) => {
      this.#partial += new TextDecoder("latin1").decode(chunk);
      let nl;
      let added = false;
      while ((nl = this.#partial.indexOf("\r\n")) >= 0) {
        this.lines.push(this.#partial.slice(0, nl));
        this.times.push(performance.now());
        this.#partial = this.#partial.slice(nl + 2);
        added = true;
      }
      if (added) this.#wake();
    });
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/** The bytes of `text` (UTF-8), with the raw bytes `raw` put where `{}` is. */
export function bytesWith(text: string, raw: number[]): Uint8Array {
  const [before, after] = text.split("{}") as [string, string];
  const head = new TextEncoder().encode(before);
  const tail = new TextEncoder().encode(after);
  const out = new Uint8Array(head.length + raw.length + tail.length);
  out.set(head);
  out.set(raw, head.length);
  out.set(tail, head.length + raw.length);
  return out;
}
