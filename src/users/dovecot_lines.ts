/**
 * The line layer of Dovecot's auth protocols: tab-separated fields, one
 * command per LF-terminated line, with Dovecot's tab escaping. Shared by
 * the client protocol (authentication) and the master protocol (userdb
 * lookups).
 *
 * @module
 */

import type { Socket } from "node:net";

/** Longest line accepted from Dovecot; more is a protocol error. */
const MAX_LINE = 64 * 1024;

// deno-lint-ignore no-control-regex -- \x01 is Dovecot's escape character
const ESCAPED = /[\x01\t\r\n]/g;
// deno-lint-ignore no-control-regex -- as above
const ESCAPE_SEQUENCE = /\x01(.)/g;

/**
 * Escapes a field value as Dovecot's `str_tabescape` does: \x01 first,
 * then TAB, CR and LF, so that a value can never add a field or a line.
 */
export function tabEscape(value: string): string {
  return value.replace(
    ESCAPED,
    (c) => c === "\x01" ? "\x011" : c === "\t" ? "\x01t" : c === "\r" ? "\x01r" : "\x01n",
  );
}

/** Undoes {@linkcode tabEscape}. */
export function tabUnescape(value: string): string {
  return value.replace(
    ESCAPE_SEQUENCE,
    (_, c: string) =>
      c === "1" ? "\x01" : c === "t" ? "\t" : c === "r" ? "\r" : c === "n" ? "\n" : c,
  );
}

/** A line-by-line conversation over a connected socket, with one deadline. */
export class LineChannel {
  #socket: Socket;
  #buffer = "";
  #lines: string[] = [];
  #waiting: ((line: string | Error) => void) | undefined;
  #error: Error | undefined;
  #timer: ReturnType<typeof setTimeout>;

  /** Takes over `socket`; after `timeoutMs` every read fails and the socket closes. */
  constructor(socket: Socket, timeoutMs: number, what: string) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.#onData(chunk));
    socket.on("error", (err) => this.#fail(new Error(`${what}: ${err.message}`)));
    socket.on("close", () => this.#fail(new Error(`${what}: the connection was closed`)));
    this.#timer = setTimeout(
      () => this.#fail(new Error(`${what}: no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let newline: number;
    while ((newline = this.#buffer.indexOf("\n")) >= 0) {
      this.#lines.push(this.#buffer.slice(0, newline));
      this.#buffer = this.#buffer.slice(newline + 1);
    }
    if (this.#buffer.length > MAX_LINE) {
      this.#fail(new Error("Dovecot sent a line that is too long"));
      return;
    }
    this.#deliver();
  }

  #deliver(): void {
    const waiting = this.#waiting;
    if (!waiting) return;
    const line = this.#lines.shift();
    if (line !== undefined) {
      this.#waiting = undefined;
      waiting(line);
    } else if (this.#error) {
      this.#waiting = undefined;
      waiting(this.#error);
    }
  }

  #fail(err: Error): void {
    this.#error ??= err;
    this.#socket.destroy();
    this.#deliver();
  }

  /** Sends lines (each is given its LF). */
  send(...lines: string[]): void {
    this.#socket.write(lines.map((l) => `${l}\n`).join(""));
  }

  /**
   * The next line, split into fields (unescaped).
   *
   * @throws {Error} when the connection ends, fails or times out first.
   */
  next(): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.#waiting = (line) => {
        if (line instanceof Error) reject(line);
        else resolve(line.replace(/\r$/, "").split("\t").map(tabUnescape));
      };
      this.#deliver();
    });
  }

  /** Ends the conversation. */
  close(): void {
    clearTimeout(this.#timer);
    this.#error ??= new Error("closed");
    this.#socket.destroy();
  }
}

/** The value of `name=` among `fields`, or undefined; a bare `name` gives "". */
export function field(fields: readonly string[], name: string): string | undefined {
  for (const f of fields) {
    if (f === name) return "";
    if (f.startsWith(`${name}=`)) return f.slice(name.length + 1);
  }
  return undefined;
}
