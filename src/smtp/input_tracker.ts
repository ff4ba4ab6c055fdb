/**
 * Whether the client sent more after the command line being handled: the
 * bytes left in the chunk smtp-server's parser is working through, or
 * chunks already waiting behind it. Postfix peeks at its input buffer the
 * same way to catch a client that pipelines where it must wait for a reply
 * (smtpd_forbid_unauth_pipelining).
 *
 * The tracker wraps the parser's `_write` (each chunk as it is parsed) and
 * `oncommand` (each line as it is dispatched); the parser works on one
 * chunk at a time, and lines come out in order.
 *
 * @module
 */

/** The part of smtp-server's SMTPStream that the tracker uses. */
export interface TrackedParser {
  _write(chunk: Uint8Array, encoding: string, next: (err?: Error | null) => void): void;
  oncommand(command: Uint8Array, callback?: () => void): void;
  _dataMode: boolean;
  _remainder: string;
  isClosed: boolean;
  readonly writableLength: number;
}

/** Follows one parser's input; see the module description. */
export class InputTracker {
  #parser: TrackedParser;
  /** The text being split into lines (the parser's remainder, then the chunk). */
  #buffer: Uint8Array = new Uint8Array(0);
  /** Where the next line starts in it. */
  #position = 0;
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
        if (rest.length === 0) {
          this.#buffer = chunk;
        } else {
          const joined = new Uint8Array(rest.length + chunk.length);
          for (let i = 0; i < rest.length; i++) joined[i] = rest.charCodeAt(i);
          joined.set(chunk, rest.length);
          this.#buffer = joined;
        }
        this.#position = 0;
      }
      write(chunk, encoding, next);
    };
    const oncommand = parser.oncommand.bind(parser);
    parser.oncommand = (command, callback) => {
      this.#consume(command.length);
      oncommand(command, callback);
    };
  }

  /** True when input follows the line being handled. */
  pending(): boolean {
    return this.#position < this.#buffer.length ||
      this.#parser.writableLength > this.#outerLength;
  }

  /** Steps over a line of `length` bytes and its line ending (CRLF or LF). */
  #consume(length: number): void {
    let p = this.#position + length;
    if (this.#buffer[p] === 0x0d && this.#buffer[p + 1] === 0x0a) p += 2;
    else if (this.#buffer[p] === 0x0a) p += 1;
    this.#position = Math.min(p, this.#buffer.length);
  }
}
