/**
 * Follows what smtp-server's parser reads, for two things:
 *
 * 1. Whether the client sent more after the command line being handled:
 *    the bytes left in the chunk the parser is working through, or chunks
 *    already waiting behind it. Postfix peeks at its input buffer the same
 *    way to catch a client that pipelines where it must wait for a reply
 *    (smtpd_forbid_unauth_pipelining).
 * 2. Command lines over the parser's length limit. smtp-server ends the
 *    session for one (its parser fails, `421 Command line too long`); here
 *    such a line is taken out before the parser sees it, whatever chunks it
 *    arrives in, and an empty line is handed over in its place, flagged
 *    ({@linkcode InputTracker.lineTooLong}), so that the connection answers
 *    it in turn with `500 5.5.2` and reads on (RFC 5321 sections 4.2.2 and
 *    4.5.3.1.4; as Postfix does).
 *
 * The tracker wraps the parser's `_write` (each chunk as it is parsed) and
 * `oncommand` (each line as it is dispatched); the parser works on one
 * chunk at a time, and lines come out in order.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** The part of smtp-server's SMTPStream that the tracker uses. */
export interface TrackedParser {
  _write(chunk: Uint8Array, encoding: string, next: (err?: Error | null) => void): void;
  oncommand(command: Uint8Array, callback?: () => void): void;
  _dataMode: boolean;
  _remainder: string;
  _maxCommandLength: number;
  isClosed: boolean;
  readonly writableLength: number;
}

const LF = 0x0a;
const CR = 0x0d;

/** Follows one parser's input; see the module description. */
export class InputTracker {
  #parser: TrackedParser;
  /** The text being split into lines (the parser's remainder, then the chunk). */
  #buffer: Uint8Array = new Uint8Array(0);
  /** Where the next line starts in it. */
  #position = 0;
  /** Where lines that stand for over-long ones start in it. */
  #tooLongAt = new Set<number>();
  /** The line being dispatched stands for an over-long one. */
  #lineTooLong = false;
  /** The start of an over-long line was dropped; its end has not arrived yet. */
  #skipping = false;
  /** The length of the chunk the stream handed to `_write` and not yet acknowledged. */
  #outerLength = 0;
  #outerDone = true;

  /** Starts following `parser` (call right after it was created). */
  constructor(parser: TrackedParser) {
    this.#parser = parser;
    const write = parser._write.bind(parser);
    parser._write = (chunk, encoding, next) => {
      if (this.#outerDone) {
        // A chunk from the socket. The parser calls _write itself too, with
        // parts of this chunk, until it acknowledges it.
        this.#outerDone = false;
        this.#outerLength = chunk.length;
        const acknowledge = next;
        next = (err) => {
          this.#outerDone = true;
          acknowledge(err);
        };
      }
      if (!parser._dataMode && !parser.isClosed) {
        // The parser splits its remainder (a partial line, latin1) plus this chunk.
        const rest = parser._remainder;
        let text: Uint8Array;
        if (rest.length === 0) {
          text = chunk;
        } else {
          text = new Uint8Array(rest.length + chunk.length);
          for (let i = 0; i < rest.length; i++) text[i] = rest.charCodeAt(i);
          text.set(chunk, rest.length);
        }
        this.#tooLongAt.clear();
        const lines = this.#withoutLongLines(text);
        this.#buffer = lines;
        this.#position = 0;
        if (lines !== text) {
          parser._remainder = "";
          chunk = Buffer.from(lines.buffer, lines.byteOffset, lines.byteLength);
        }
      }
      write(chunk, encoding, next);
    };
    const oncommand = parser.oncommand.bind(parser);
    parser.oncommand = (command, callback) => {
      this.#lineTooLong = this.#tooLongAt.has(this.#position);
      this.#consume(command.length);
      oncommand(command, callback);
    };
  }

  /** True when input follows the line being handled. */
  pending(): boolean {
    return this.#position < this.#buffer.length ||
      this.#parser.writableLength > this.#outerLength;
  }

  /** True while the line being handled stands for a line over the length limit. */
  get lineTooLong(): boolean {
    return this.#lineTooLong;
  }

  /** Steps over a line of `length` bytes and its line ending (CRLF or LF). */
  #consume(length: number): void {
    let p = this.#position + length;
    if (this.#buffer[p] === CR && this.#buffer[p + 1] === LF) p += 2;
    else if (this.#buffer[p] === LF) p += 1;
    this.#position = Math.min(p, this.#buffer.length);
  }

  /**
   * `text` with each line over the limit replaced by an empty one (noted in
   * `#tooLongAt`), and an over-long partial line at its end dropped (its
   * end, in a later chunk, then stands for it); `text` itself when nothing
   * changed. Lines after a DATA or BDAT line are left alone: they may be a
   * message, which the parser reads in its data mode.
   */
  #withoutLongLines(text: Uint8Array): Uint8Array {
    const max = this.#parser._maxCommandLength;
    const out: Uint8Array[] = [];
    let size = 0;
    let changed = false;
    let pos = 0;
    const keep = (part: Uint8Array) => {
      out.push(part);
      size += part.length;
    };
    const standIn = () => {
      this.#tooLongAt.add(size);
      keep(new Uint8Array([CR, LF]));
      changed = true;
    };
    if (this.#skipping) {
      const end = text.indexOf(LF);
      if (end < 0) return new Uint8Array(0);
      this.#skipping = false;
      standIn();
      pos = end + 1;
    }
    while (pos < text.length) {
      const end = text.indexOf(LF, pos);
      if (end < 0) {
        const partial = text.subarray(pos);
        const length = partial.length - (partial[partial.length - 1] === CR ? 1 : 0);
        if (length > max) {
          this.#skipping = true;
          changed = true;
        } else keep(partial);
        break;
      }
      const line = text.subarray(pos, end);
      const length = line.length - (line[line.length - 1] === CR ? 1 : 0);
      if (length > max) standIn();
      else keep(text.subarray(pos, end + 1));
      pos = end + 1;
      if (startsData(line)) {
        keep(text.subarray(pos));
        break;
      }
    }
    if (!changed) return text;
    const joined = new Uint8Array(size);
    let at = 0;
    for (const part of out) {
      joined.set(part, at);
      at += part.length;
    }
    return joined;
  }
}

/** True for a DATA or BDAT command line (what follows may be a message). */
function startsData(line: Uint8Array): boolean {
  let i = 0;
  while (line[i] === 0x20 || line[i] === 0x09) i++;
  const verb = String.fromCharCode(...line.subarray(i, i + 5)).toUpperCase();
  return /^(DATA|BDAT)(\s|$)/.test(verb);
}
