/**
 * Converts an 8-bit MIME message to 7 bits for a server that does not offer
 * 8BITMIME (RFC 6152 section 3: the client must not send it 8-bit data),
 * as Postfix does unless `disable_mime_output_conversion` is set: every
 * body part declared `Content-Transfer-Encoding: 8bit` is re-encoded as
 * quoted-printable (RFC 2045 section 6.7) and its header says so, and a
 * multipart or message/rfc822 entity declared 8bit is declared 7bit once
 * the parts inside are converted (RFC 2045 section 6.4). Header fields are
 * sent as they are (8-bit header text has no MIME encoding to convert to),
 * and so is a part that declares 7bit or binary. A DKIM signature over a
 * converted body no longer verifies, as with Postfix.
 *
 * @module
 */

/** A line longer than this is handled in pieces (a QP soft break keeps it valid). */
const MAX_PIECE = 64 * 1024;
/** Header bytes of one entity kept to rewrite; past this the header goes unchanged. */
const MAX_HEADER = 256 * 1024;
const CRLF = new Uint8Array([0x0d, 0x0a]);
const encoder = new TextEncoder();

type Mode = "copy" | "qp" | "multipart" | "message";

/** One MIME entity being read: its header lines until the empty line, then its body. */
interface Entity {
  /** Header lines kept until the empty line; undefined once the body started. */
  header: Uint8Array[] | undefined;
  headerBytes: number;
  /** The header was too large to keep: it is copied, and so is the body. */
  overflow: boolean;
  mode: Mode;
  /** Inside a multipart/digest, a part is message/rfc822 by default (RFC 2046 5.1.5). */
  digest: boolean;
}

/** The 7-bit form of `message`; see the module. */
export async function* downgradeTo7bit(
  message: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const converter = new Downgrader();
  let rest = new Uint8Array(0);
  for await (const chunk of message) {
    let data = rest.length > 0 ? concat(rest, chunk) : chunk;
    let start = 0;
    for (let end = data.indexOf(0x0a); end >= 0; end = data.indexOf(0x0a, start)) {
      yield* converter.line(data.subarray(start, end + 1), true);
      start = end + 1;
    }
    data = data.subarray(start);
    while (data.length > MAX_PIECE) {
      yield* converter.line(data.subarray(0, MAX_PIECE), false);
      data = data.subarray(MAX_PIECE);
    }
    rest = data.slice();
  }
  if (rest.length > 0) yield* converter.line(rest, true);
  yield* converter.end();
}

class Downgrader {
  /** Boundaries of the multiparts the reader is in, outermost first. */
  #boundaries: Array<{ boundary: string; digest: boolean }> = [];
  #entity: Entity = newEntity(false);
  /** The current line started in an earlier piece. */
  #midLine = false;
  /** Output column of the quoted-printable line being written. */
  #column = 0;

  /** Converts one line (with its LF) or, `complete` false, a piece of a long line. */
  *line(bytes: Uint8Array, complete: boolean): Generator<Uint8Array> {
    const first = !this.#midLine;
    this.#midLine = !complete;
    const delimiter = first && complete ? this.#delimiter(bytes) : undefined;
    if (delimiter !== undefined) {
      // What the boundary cuts short ends here; the next part (or the
      // epilogue) starts after it.
      yield* this.#flushHeader();
      yield bytes;
      this.#column = 0;
      this.#boundaries.length = delimiter.depth + 1;
      if (delimiter.closing) {
        this.#boundaries.pop();
        this.#entity = { ...newEntity(false), header: undefined };
      } else {
        this.#entity = newEntity(this.#boundaries[delimiter.depth]!.digest);
      }
      return;
    }
    const entity = this.#entity;
    if (entity.header !== undefined) {
      if (first && complete && isBlank(bytes)) {
        yield* this.#endHeader(bytes);
        return;
      }
      entity.header.push(bytes.slice());
      entity.headerBytes += bytes.length;
      if (entity.headerBytes > MAX_HEADER) {
        entity.overflow = true;
        yield* this.#flushHeader();
      }
      return;
    }
    if (entity.mode !== "qp") {
      yield bytes;
      return;
    }
    const text = complete ? stripEol(bytes) : bytes;
    yield encoder.encode(this.#quotedPrintable(text, complete));
    if (complete) {
      yield CRLF;
      this.#column = 0;
    }
  }

  /** Whatever is still held (a header without its empty line). */
  *end(): Generator<Uint8Array> {
    yield* this.#flushHeader();
  }

  /**
   * The boundary of an open multipart that `bytes` is, innermost first (an
   * outer one closes the multiparts inside it); undefined if none.
   */
  #delimiter(bytes: Uint8Array): { depth: number; closing: boolean } | undefined {
    if (this.#boundaries.length === 0 || bytes[0] !== 0x2d || bytes[1] !== 0x2d) return undefined;
    if (bytes.length > 200) return undefined;
    // RFC 2046 section 5.1.1: "--" boundary ["--"], then transport padding.
    const text = latin1(stripEol(bytes)).replace(/[ \t]+$/, "");
    for (let depth = this.#boundaries.length - 1; depth >= 0; depth--) {
      const { boundary } = this.#boundaries[depth]!;
      if (text === `--${boundary}`) return { depth, closing: false };
      if (text === `--${boundary}--`) return { depth, closing: true };
    }
    return undefined;
  }

  /** The empty line after a header: decide how the body goes, and send the header. */
  *#endHeader(blank: Uint8Array): Generator<Uint8Array> {
    const entity = this.#entity;
    const lines = entity.header ?? [];
    const fields = unfold(lines);
    const type = (fields.get("content-type") ?? (entity.digest ? "message/rfc822" : "text/plain"))
      .trim();
    const mediaType = /^[^;\s]*/.exec(type)![0].toLowerCase();
    const encoding = /^[^\s;(]*/.exec((fields.get("content-transfer-encoding") ?? "").trim())![0]
      .toLowerCase();
    const boundary = /;\s*boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(type);
    let rewrite: string | undefined;
    if (mediaType.startsWith("multipart/") && boundary) {
      entity.mode = "multipart";
      this.#boundaries.push({
        boundary: (boundary[1] ?? boundary[2]!).replace(/\\(.)/g, "$1"),
        digest: mediaType === "multipart/digest",
      });
      if (encoding === "8bit") rewrite = "7bit";
    } else if (mediaType === "message/rfc822") {
      entity.mode = "message";
      if (encoding === "8bit") rewrite = "7bit";
    } else if (encoding === "8bit") {
      entity.mode = "qp";
      rewrite = "quoted-printable";
    }
    for (const [index, line] of lines.entries()) {
      if (rewrite !== undefined && isEncodingField(lines, index)) {
        yield encoder.encode(`Content-Transfer-Encoding: ${rewrite}\r\n`);
      } else if (rewrite === undefined || !isContinuationOfEncoding(lines, index)) {
        yield line;
      }
    }
    yield blank;
    entity.header = undefined;
    // RFC 2046 section 5.2.1: the body of a message/rfc822 is a message.
    if (entity.mode === "message") this.#entity = newEntity(false);
  }

  /** Sends a held header unchanged (too large, or cut short by a boundary or the end). */
  *#flushHeader(): Generator<Uint8Array> {
    const entity = this.#entity;
    if (entity.header === undefined) return;
    yield* entity.header;
    entity.header = entity.overflow ? undefined : [];
    entity.headerBytes = 0;
    if (entity.overflow) entity.mode = "copy";
  }

  /** RFC 2045 section 6.7: lines of at most 76 characters, soft breaks "=". */
  #quotedPrintable(bytes: Uint8Array, complete: boolean): string {
    let out = "";
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i]!;
      const last = complete && i === bytes.length - 1;
      const literal = (byte >= 33 && byte <= 126 && byte !== 0x3d) ||
        ((byte === 0x20 || byte === 0x09) && !last);
      const code = literal
        ? String.fromCharCode(byte)
        : `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
      if (this.#column + code.length > 75) {
        out += "=\r\n";
        this.#column = 0;
      }
      out += code;
      this.#column += code.length;
    }
    return out;
  }
}

function newEntity(digest: boolean): Entity {
  return { header: [], headerBytes: 0, overflow: false, mode: "copy", digest };
}

/** Header fields by lower-case name (the first of each), unfolded. */
function unfold(lines: Uint8Array[]): Map<string, string> {
  const fields = new Map<string, string>();
  let name: string | undefined;
  let value = "";
  const done = () => {
    if (name !== undefined && !fields.has(name)) fields.set(name, value);
  };
  for (const line of lines) {
    const text = latin1(stripEol(line));
    if (/^[ \t]/.test(text) && name !== undefined) {
      value += text;
      continue;
    }
    done();
    const colon = text.indexOf(":");
    name = colon > 0 ? text.slice(0, colon).trim().toLowerCase() : undefined;
    value = colon > 0 ? text.slice(colon + 1) : "";
  }
  done();
  return fields;
}

function isEncodingField(lines: Uint8Array[], index: number): boolean {
  return /^content-transfer-encoding\s*:/i.test(latin1(lines[index]!.subarray(0, 40)));
}

/** A folded line that continues a Content-Transfer-Encoding field. */
function isContinuationOfEncoding(lines: Uint8Array[], index: number): boolean {
  let i = index;
  while (i > 0 && (lines[i]![0] === 0x20 || lines[i]![0] === 0x09)) i--;
  return i !== index && isEncodingField(lines, i);
}

function isBlank(bytes: Uint8Array): boolean {
  return stripEol(bytes).length === 0;
}

function stripEol(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  return bytes.subarray(0, end);
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
