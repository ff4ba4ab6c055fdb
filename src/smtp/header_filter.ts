/**
 * Removes header fields from a message as it streams into the spool. Used
 * for RFC 8601 section 5 (an MTA removes `Authentication-Results` fields
 * that carry its own authserv-id from mail arriving from outside, or a
 * sender could forge our verdict for the filters and readers downstream)
 * and for the SendID/ListID fields of submitted mail.
 *
 * Every field of the header section is judged, whatever its length: a
 * {@linkcode FieldJudge} sees the field's bytes as they arrive and gives
 * its verdict as soon as it can (most fields are decided by their name).
 * Until then the field is held in memory up to {@linkcode HOLD_BYTES};
 * beyond that it is written on to the spool, and a later "drop" takes the
 * written bytes back ({@linkcode Retract}). Memory stays bounded by the
 * hold, never by the field or the message.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";

/** What a judge decided about a field. */
export type FieldVerdict = "keep" | "drop";

/**
 * Judges one header field (name, colon, body, folds and line ends, exactly
 * as received). `feed` sees every byte of the field in order, until its
 * end, even after a verdict; `end` is called once, when the field ends.
 * The first verdict given is the one that counts.
 */
export interface FieldJudge {
  /** The next bytes of the field; returns the verdict once there is one. */
  feed(bytes: Uint8Array): FieldVerdict | undefined;
  /** The field ended; returns the verdict (used if none came before). */
  end(): FieldVerdict;
}

/** Makes a judge for each field. */
export type JudgeFactory = () => FieldJudge;

/** Take back the last `retract` bytes written: a field held on disk was dropped. */
export interface Retract {
  retract: number;
}

/** What the filter gives the writer: bytes to append, or bytes to take back. */
export type FilterOutput = Uint8Array | Retract;

/** An undecided field is held in memory up to this size, then written on. */
export const HOLD_BYTES = 64 * 1024;

/** Held pieces are joined into one when there are this many. */
const MAX_HELD_PIECES = 256;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HT = 0x09;
const CR_BYTES = new Uint8Array([CR]);

/**
 * A streaming filter over the header section: each field is judged as it
 * arrives; kept fields pass on byte for byte, dropped ones are removed
 * whole (folds included); the body passes through untouched.
 */
export class HeaderFilter {
  #judges: JudgeFactory;
  #inHeader = true;
  #atLineStart = true;
  /** A CR at the start of a line, at the end of a chunk: an empty line or not. */
  #pendingCr = false;
  #judge: FieldJudge | undefined;
  #verdict: FieldVerdict | undefined;
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** Bytes of the undecided field already given out (held too long). */
  #spilled = 0;
  /** Fields removed so far. */
  dropped = 0;

  /** Creates a filter that asks a judge from `judges` about each field. */
  constructor(judges: JudgeFactory) {
    this.#judges = judges;
  }

  /** Feeds a chunk; returns what to write (or take back) now, in order. */
  push(chunk: Uint8Array): FilterOutput[] {
    if (!this.#inHeader) return [chunk];
    const out: FilterOutput[] = [];
    if (this.#pendingCr) {
      this.#pendingCr = false;
      const joined = new Uint8Array(chunk.byteLength + 1);
      joined[0] = CR;
      joined.set(chunk, 1);
      chunk = joined;
    }
    let pos = 0;
    while (this.#inHeader && pos < chunk.byteLength) {
      if (this.#atLineStart) {
        const first = chunk[pos]!;
        if (first === SP || first === HT) {
          // RFC 5322 section 2.2.3: a folded continuation of the field.
          if (!this.#judge) this.#startField();
        } else if (first === LF || first === CR) {
          if (first === CR && pos + 1 === chunk.byteLength) {
            this.#pendingCr = true;
            return out;
          }
          if (first === LF || chunk[pos + 1] === LF) {
            // The empty line that ends the header section (RFC 5322 section 2.1).
            this.#endField(out);
            this.#inHeader = false;
            break;
          }
          // A bare CR starts a (malformed) field; it is judged like any other.
          this.#endField(out);
          this.#startField();
        } else {
          this.#endField(out);
          this.#startField();
        }
        this.#atLineStart = false;
      }
      const lf = chunk.indexOf(LF, pos);
      const end = lf < 0 ? chunk.byteLength : lf + 1;
      this.#fieldBytes(chunk.subarray(pos, end), out);
      pos = end;
      if (lf >= 0) this.#atLineStart = true;
    }
    if (pos < chunk.byteLength) out.push(chunk.subarray(pos));
    return out;
  }

  /** The end of the message: the field in progress is judged and passed on or removed. */
  end(): FilterOutput[] {
    const out: FilterOutput[] = [];
    if (!this.#inHeader) return out;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      this.#endField(out);
      this.#startField();
      this.#fieldBytes(CR_BYTES, out);
    }
    this.#endField(out);
    return out;
  }

  #startField(): void {
    this.#judge = this.#judges();
    this.#verdict = undefined;
  }

  #fieldBytes(bytes: Uint8Array, out: FilterOutput[]): void {
    const judge = this.#judge!;
    const said = judge.feed(bytes);
    if (this.#verdict === "keep") {
      out.push(bytes);
      return;
    }
    if (this.#verdict === "drop") return;
    if (said !== undefined) {
      this.#decide(said, out);
      if (said === "keep") out.push(bytes);
      return;
    }
    if (this.#spilled > 0) {
      out.push(bytes);
      this.#spilled += bytes.byteLength;
      return;
    }
    this.#held.push(bytes);
    this.#heldBytes += bytes.byteLength;
    if (this.#held.length >= MAX_HELD_PIECES) {
      // A client that trickles bytes: one piece instead of thousands.
      this.#held = [concatBytes(this.#held, this.#heldBytes)];
    }
    if (this.#heldBytes > HOLD_BYTES) {
      // Too long to hold undecided: on to the spool, taken back if dropped.
      for (const piece of this.#held) out.push(piece);
      this.#spilled = this.#heldBytes;
      this.#held = [];
      this.#heldBytes = 0;
    }
  }

  #endField(out: FilterOutput[]): void {
    const judge = this.#judge;
    if (!judge) return;
    this.#judge = undefined;
    const said = judge.end();
    if (this.#verdict === undefined) this.#decide(said, out);
    this.#verdict = undefined;
  }

  #decide(verdict: FieldVerdict, out: FilterOutput[]): void {
    this.#verdict = verdict;
    if (verdict === "keep") {
      for (const piece of this.#held) out.push(piece);
    } else {
      this.dropped++;
      if (this.#spilled > 0) out.push({ retract: this.#spilled });
    }
    this.#held = [];
    this.#heldBytes = 0;
    this.#spilled = 0;
  }
}

/** A judge that drops a field when any of `judges` drops it; each sees every byte. */
export function dropIfAny(...judges: JudgeFactory[]): JudgeFactory {
  return () => new AnyJudge(judges.map((make) => make()));
}

class AnyJudge implements FieldJudge {
  #judges: FieldJudge[];
  #said: Array<FieldVerdict | undefined>;

  constructor(judges: FieldJudge[]) {
    this.#judges = judges;
    this.#said = judges.map(() => undefined);
  }

  feed(bytes: Uint8Array): FieldVerdict | undefined {
    this.#judges.forEach((judge, i) => {
      const said = judge.feed(bytes);
      this.#said[i] ??= said;
    });
    if (this.#said.includes("drop")) return "drop";
    return this.#said.every((s) => s === "keep") ? "keep" : undefined;
  }

  end(): FieldVerdict {
    this.#judges.forEach((judge, i) => {
      const said = judge.end();
      this.#said[i] ??= said;
    });
    return this.#said.includes("drop") ? "drop" : "keep";
  }
}

/**
 * Reads a field name as its bytes arrive: up to the colon (RFC 5322
 * section 3.6.8; obsolete syntax allows white space before it, section
 * 4.5), lower-cased, at most `max` bytes kept. Leading white space and CR
 * (a malformed first line) are skipped, as lenient readers do.
 */
export class FieldNameReader {
  #max: number;
  #name: number[] = [];
  #afterName = false;
  /** The name, once the colon was seen; `null` when the field has none or it is too long. */
  name: string | null | undefined = undefined;

  /** Creates a reader that keeps names up to `max` bytes. */
  constructor(max: number) {
    this.#max = max;
  }

  /**
   * Reads from `bytes` until the colon; returns the index after it (the
   * body starts there), or -1 when the name is not finished (or failed).
   */
  read(bytes: Uint8Array): number {
    for (let i = 0; i < bytes.byteLength && this.name === undefined; i++) {
      const b = bytes[i]!;
      if (b === 0x3a) {
        this.name = this.#name.length > 0 ? String.fromCharCode(...this.#name) : null;
        return i + 1;
      }
      if (b === SP || b === HT || b === CR || b === LF) {
        if (this.#name.length > 0) this.#afterName = true;
        continue;
      }
      if (this.#afterName || this.#name.length >= this.#max) {
        this.name = null;
        return -1;
      }
      this.#name.push(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
    }
    return -1;
  }
}
