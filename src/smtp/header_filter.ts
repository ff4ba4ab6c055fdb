/**
 * Removes header fields from a message as it streams into the spool. Used
 * for RFC 8601 section 5: an MTA removes `Authentication-Results` fields
 * that carry its own authserv-id from mail arriving from outside, or a
 * sender could forge our verdict for the filters and readers downstream.
 *
 * @module
 */

/** Decides whether a whole header field (name, colon, body, folds) goes. */
export type FieldPredicate = (field: string) => boolean;

/** A field longer than this is passed through unexamined (and ends filtering). */
const MAX_FIELD_BYTES = 64 * 1024;

const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const CR = 0x0d;

/**
 * A streaming filter over the header section: whole fields are held until
 * their last folded line is seen, then dropped or passed on; the body
 * passes through untouched. Memory is bounded by one field.
 */
export class HeaderFilter {
  #drop: FieldPredicate;
  #inHeader = true;
  #line: Uint8Array[] = [];
  #lineBytes = 0;
  #field: Uint8Array[] = [];
  #fieldBytes = 0;
  /** Fields removed so far. */
  dropped = 0;

  /** Creates a filter that removes the fields `drop` returns true for. */
  constructor(drop: FieldPredicate) {
    this.#drop = drop;
  }

  /** Feeds a chunk; returns what may be written now. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (!this.#inHeader) return [chunk];
    const out: Uint8Array[] = [];
    let start = 0;
    while (this.#inHeader && start < chunk.byteLength) {
      const lf = chunk.indexOf(LF, start);
      if (lf < 0) {
        this.#addToLine(chunk.subarray(start), out);
        return out;
      }
      this.#addToLine(chunk.subarray(start, lf + 1), out);
      start = lf + 1;
      if (this.#inHeader) this.#endOfLine(out);
    }
    if (start < chunk.byteLength) out.push(chunk.subarray(start));
    return out;
  }

  /** The end of the message: whatever is held is passed on. */
  end(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.#inHeader && this.#line.length > 0) this.#endOfLine(out);
    if (this.#inHeader) this.#flushField(out, true);
    return out;
  }

  #addToLine(part: Uint8Array, out: Uint8Array[]): void {
    this.#line.push(part);
    this.#lineBytes += part.byteLength;
    if (this.#lineBytes + this.#fieldBytes > MAX_FIELD_BYTES) {
      // Too long to judge: stop filtering rather than hold it in memory.
      this.#flushField(out, false);
      out.push(...this.#line);
      this.#line = [];
      this.#inHeader = false;
    }
  }

  #endOfLine(out: Uint8Array[]): void {
    const first = this.#line[0]![0];
    const line = this.#line;
    this.#line = [];
    const bytes = this.#lineBytes;
    this.#lineBytes = 0;
    if (first === SP || first === HT) {
      // RFC 5322 section 2.2.3: a folded continuation of the field.
      this.#field.push(...line);
      this.#fieldBytes += bytes;
      return;
    }
    this.#flushField(out, true);
    if (first === CR || first === LF) {
      // The empty line that ends the header section.
      out.push(...line);
      this.#inHeader = false;
      return;
    }
    this.#field = line;
    this.#fieldBytes = bytes;
  }

  #flushField(out: Uint8Array[], judge: boolean): void {
    if (this.#field.length === 0) return;
    const field = this.#field;
    this.#field = [];
    this.#fieldBytes = 0;
    if (judge && this.#drop(decode(field))) {
      this.dropped++;
      return;
    }
    out.push(...field);
  }
}

function decode(parts: Uint8Array[]): string {
  const decoder = new TextDecoder();
  return parts.map((p) => decoder.decode(p, { stream: true })).join("") + decoder.decode();
}

/**
 * A predicate for `Authentication-Results` fields whose authserv-id
 * (RFC 8601 section 2.2) is `hostname`.
 */
export function ourAuthenticationResults(hostname: string): FieldPredicate {
  const ours = hostname.toLowerCase();
  return (field) => {
    const match = /^authentication-results[ \t]*:(.*)$/is.exec(field);
    if (!match) return false;
    // Unfold, drop comments, take the first token before ";" or white space.
    const body = match[1]!.replace(/\r?\n/g, "").replace(/\([^)]*\)/g, " ").trim();
    const id = body.split(/[;\s]/, 1)[0]!.replace(/^"|"$/g, "").toLowerCase();
    return id === ours;
  };
}
