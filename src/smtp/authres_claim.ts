/**
 * Which `Authentication-Results` fields claim our authserv-id (RFC 8601
 * section 2.2), judged as the field's bytes stream in, in constant memory:
 * a lexer for the start of the field, through the folding white space and
 * comments (nested, with quoted-pairs: RFC 5322 section 3.2.2) before the
 * authserv-id, which is a token or a quoted-string (RFC 2045 section 5.1,
 * via RFC 8601's `value`).
 *
 * It errs towards removal: whatever a lenient reader could take for our
 * authserv-id counts as a claim (a bare CR separates like white space; the
 * id may end at any character a token cannot hold, or at the end of the
 * field). A field whose first value is anything else is not a claim and
 * is kept byte for byte.
 *
 * @module
 */

import { type FieldJudge, FieldNameReader, type FieldVerdict } from "./header_filter.ts";

const NAME = "authentication-results";

/** Where the lexer is in the field. */
const State = {
  Name: 0,
  /** White space and comments before the authserv-id. */
  Cfws: 1,
  Comment: 2,
  CommentEscape: 3,
  Token: 4,
  Quoted: 5,
  QuotedEscape: 6,
  Done: 7,
} as const;
type State = typeof State[keyof typeof State];

/** RFC 2045 tspecials: they end a token, as do SP, CTLs and DEL. */
const TSPECIALS = new Set([...'()<>@,;:\\"/[]?='].map((c) => c.charCodeAt(0)));

function isTokenByte(b: number): boolean {
  // Bytes over 0x7f are kept in the token (RFC 6532 UTF-8); they can never
  // match an ASCII name, and keeping them avoids splitting a value in two.
  return b > 0x20 && b !== 0x7f && !TSPECIALS.has(b);
}

function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
}

/**
 * A judge factory for the header filter: fields named
 * `Authentication-Results` whose authserv-id is `hostname` (compared
 * without regard to ASCII case) are dropped.
 */
export function ourAuthenticationResults(hostname: string): () => FieldJudge {
  const ours = Array.from(new TextEncoder().encode(hostname), lower);
  return () => new ClaimJudge(ours);
}

class ClaimJudge implements FieldJudge {
  #ours: number[];
  #name = new FieldNameReader(NAME.length);
  #state: State = State.Name;
  #depth = 0;
  /** How many bytes of the id so far match ours; -1 once it cannot match. */
  #matched = 0;
  #verdict: FieldVerdict | undefined;

  constructor(ours: number[]) {
    this.#ours = ours;
  }

  feed(bytes: Uint8Array): FieldVerdict | undefined {
    if (this.#verdict !== undefined) return this.#verdict;
    let i = 0;
    if (this.#state === State.Name) {
      const after = this.#name.read(bytes);
      if (this.#name.name === undefined) return undefined;
      if (this.#name.name !== NAME) return this.#decide("keep");
      this.#state = State.Cfws;
      i = after;
    }
    for (; i < bytes.byteLength; i++) {
      const b = bytes[i]!;
      switch (this.#state) {
        case State.Cfws:
          if (b === 0x28) {
            this.#state = State.Comment;
            this.#depth = 1;
          } else if (b === 0x22) {
            this.#state = State.Quoted;
          } else if (isTokenByte(b)) {
            this.#state = State.Token;
            this.#take(b);
          } else if (b !== 0x20 && b !== 0x09 && b !== 0x0d && b !== 0x0a) {
            // ";" (or another special) with no authserv-id before it.
            return this.#decide("keep");
          }
          break;
        case State.Comment:
          // RFC 5322 section 3.2.2: comments nest; a quoted-pair is literal.
          if (b === 0x5c) this.#state = State.CommentEscape;
          else if (b === 0x28) this.#depth++;
          else if (b === 0x29 && --this.#depth === 0) this.#state = State.Cfws;
          break;
        case State.CommentEscape:
          this.#state = State.Comment;
          break;
        case State.Token:
          if (!isTokenByte(b)) return this.#decide(this.#complete());
          this.#take(b);
          break;
        case State.Quoted:
          if (b === 0x22) return this.#decide(this.#complete());
          if (b === 0x5c) this.#state = State.QuotedEscape;
          else if (b !== 0x0d && b !== 0x0a) this.#take(b); // unfolding drops CRLF only
          break;
        case State.QuotedEscape:
          this.#state = State.Quoted;
          this.#take(b);
          break;
      }
      if (this.#matched < 0) return this.#decide("keep");
    }
    return undefined;
  }

  end(): FieldVerdict {
    if (this.#verdict !== undefined) return this.#verdict;
    // An id that runs to the end of the field is judged as it stands.
    const inId = this.#state === State.Token || this.#state === State.Quoted ||
      this.#state === State.QuotedEscape;
    return this.#decide(inId ? this.#complete() : "keep");
  }

  #take(b: number): void {
    if (this.#matched < 0) return;
    this.#matched = this.#ours[this.#matched] === lower(b) ? this.#matched + 1 : -1;
  }

  #complete(): FieldVerdict {
    return this.#matched === this.#ours.length ? "drop" : "keep";
  }

  #decide(verdict: FieldVerdict): FieldVerdict {
    this.#state = State.Done;
    this.#verdict = verdict;
    return verdict;
  }
}
