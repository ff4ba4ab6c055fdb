/**
 * Reads what a TLS client offers by ALPN from its ClientHello, before any
 * TLS library sees the bytes.
 *
 * `node:tls` chooses the certificate by the server name alone (its
 * SNICallback runs before ALPN is agreed), but TLS-ALPN-01 (RFC 8737
 * section 3) must show the challenge certificate only to the CA's
 * validation, which offers `acme-tls/1`, and never to an ordinary client
 * that asks for the same name. So the listener reads the ClientHello
 * first, with this parser, and chooses by both.
 *
 * The bytes come from anyone: every length is checked against what is
 * there, and anything that is not a well-formed ClientHello offers
 * nothing (the TLS library then answers it as it would have).
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";

/** The most bytes read for one ClientHello (several records of 16 KiB). */
export const CLIENT_HELLO_LIMIT = 64 * 1024;

/** TLS content type of handshake records (RFC 8446 section 5.1). */
const HANDSHAKE_RECORD = 22;
/** Handshake type of a ClientHello (RFC 8446 section 4). */
const CLIENT_HELLO = 1;
/** Extension type of ALPN (RFC 7301 section 3.1). */
const ALPN_EXTENSION = 16;
/** The largest record payload TLS allows, plus the room TLS 1.2 gives compression. */
const MAX_RECORD = 16384 + 2048;
/**
 * The most records one ClientHello is read from. A message may be cut
 * into records of one byte (RFC 8446 section 5.1); real clients use one,
 * and reading on through thousands would cost a parse per record.
 */
const MAX_RECORDS = 16;

/**
 * What the first bytes a client sent say: the protocols its ClientHello
 * offers by ALPN, in its order (an empty list when it offers none or is no
 * ClientHello), or how many bytes in all must be there before it can tell.
 */
export type Offer = { offered: string[] } | { need: number };

/**
 * What `bytes`, the start of what the client sent, offers by ALPN. Asks
 * for more (`need`) only while the ClientHello is incomplete and within
 * {@linkcode CLIENT_HELLO_LIMIT}; each answer that asks for more names the
 * end of a record, so a caller that parses again only once it has that
 * many bytes parses at most once per record.
 */
export function offeredProtocols(bytes: Uint8Array): Offer {
  const message = handshakeMessage(bytes);
  if (message === null) return { offered: [] };
  if (message instanceof Uint8Array) return { offered: alpnOf(message) ?? [] };
  return message.need > CLIENT_HELLO_LIMIT ? { offered: [] } : message;
}

/**
 * The first bytes of a connection, gathered until they tell what its
 * ClientHello offers. Each chunk is copied in: a chunk may be a view of a
 * read buffer far larger than the bytes read into it, and a client that
 * sends one byte at a time would otherwise pin a whole buffer per byte
 * for as long as the ClientHello takes. Parsed again only once the record
 * waited for can be complete, so at most once per record.
 */
export class ClientHelloBuffer {
  #bytes = new Uint8Array(1024);
  #length = 0;
  #need = 0;

  /** Every byte added so far, in order. */
  get bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }

  /**
   * Adds `chunk`, the next bytes the client sent: the protocols offered
   * once the bytes tell ({@linkcode offeredProtocols}), undefined while
   * they do not. Nothing more is to be added once they tell.
   */
  add(chunk: Uint8Array): string[] | undefined {
    const length = this.#length + chunk.length;
    if (length > this.#bytes.length) {
      // Doubled: copies cost O(n) in all, however small the chunks.
      const grown = new Uint8Array(Math.max(length, 2 * this.#bytes.length));
      grown.set(this.bytes);
      this.#bytes = grown;
    }
    this.#bytes.set(chunk, this.#length);
    this.#length = length;
    if (length < this.#need) return undefined;
    const offer = offeredProtocols(this.bytes);
    if ("offered" in offer) return offer.offered;
    this.#need = offer.need;
    return undefined;
  }
}

/**
 * The first handshake message, joined from the handshake records it spans
 * (RFC 8446 section 5.1 lets a message span records); null when the bytes
 * are not that, or how many are needed before it can tell.
 */
function handshakeMessage(bytes: Uint8Array): Uint8Array | null | { need: number } {
  const parts: Uint8Array[] = [];
  let joined = 0;
  let at = 0;
  while (true) {
    if (parts.length === MAX_RECORDS) return null;
    if (bytes.length < at + 5) return { need: at + 5 };
    const length = (bytes[at + 3]! << 8) | bytes[at + 4]!;
    if (bytes[at] !== HANDSHAKE_RECORD || length === 0 || length > MAX_RECORD) return null;
    if (bytes.length < at + 5 + length) return { need: at + 5 + length };
    parts.push(bytes.subarray(at + 5, at + 5 + length));
    joined += length;
    at += 5 + length;
    if (parts[0]![0] !== CLIENT_HELLO) return null;
    if (joined < 4) continue;
    const message = parts.length === 1 ? parts[0]! : concatBytes(parts, joined);
    const size = (message[1]! << 16) | (message[2]! << 8) | message[3]!;
    if (4 + size > CLIENT_HELLO_LIMIT) return null;
    if (joined >= 4 + size) return message.subarray(4, 4 + size);
  }
}

/**
 * Protocol names are bytes (RFC 7301 section 3.1), not text: a decoder
 * that drops a leading byte-order mark would read "\uFEFFacme-tls/1" as
 * `acme-tls/1`, a protocol the client never offered. Bytes that are not
 * UTF-8 become U+FFFD, which no protocol we look for contains.
 */
const NAMES = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The ALPN list of a ClientHello body (RFC 8446 section 4.1.2: version,
 * random, session ID, cipher suites, compression methods, extensions);
 * undefined when it has none or a length runs past its end.
 */
function alpnOf(hello: Uint8Array): string[] | undefined {
  const reader = new Reader(hello);
  reader.skip(2 + 32);
  reader.skip(reader.u8());
  reader.skip(reader.u16());
  reader.skip(reader.u8());
  if (reader.failed || reader.left === 0) return undefined;
  const extensions = reader.sub(reader.u16());
  while (!extensions.failed && extensions.left > 0) {
    const type = extensions.u16();
    const body = extensions.sub(extensions.u16());
    if (extensions.failed) return undefined;
    if (type !== ALPN_EXTENSION) continue;
    const list = body.sub(body.u16());
    const protocols: string[] = [];
    while (!list.failed && list.left > 0) {
      const name = list.bytes(list.u8());
      // RFC 7301 section 3.1: names are non-empty byte strings.
      if (list.failed || name.length === 0) return undefined;
      protocols.push(NAMES.decode(name));
    }
    return list.failed || body.failed ? undefined : protocols;
  }
  return undefined;
}

/** Reads big-endian fields; a read past the end sets `failed` and yields zeros. */
class Reader {
  #bytes: Uint8Array;
  #at = 0;
  failed = false;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get left(): number {
    return this.#bytes.length - this.#at;
  }

  u8(): number {
    return this.bytes(1)[0] ?? 0;
  }

  u16(): number {
    const b = this.bytes(2);
    return b.length === 2 ? (b[0]! << 8) | b[1]! : 0;
  }

  bytes(length: number): Uint8Array {
    if (this.failed || length > this.left) {
      this.failed = true;
      return new Uint8Array(0);
    }
    const out = this.#bytes.subarray(this.#at, this.#at + length);
    this.#at += length;
    return out;
  }

  skip(length: number): void {
    this.bytes(length);
  }

  sub(length: number): Reader {
    const inner = new Reader(this.bytes(length));
    inner.failed = this.failed;
    return inner;
  }
}
