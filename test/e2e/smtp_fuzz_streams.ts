/**
 * What the SMTP fuzz test (smtp_fuzz_test.ts) sends: command streams drawn
 * from a seeded PRNG, so that a run can be replayed: plausible sessions and
 * junk, messages with dot-stuffing and smuggling attempts, pipelined floods
 * and byte mutations, written in one piece, line by line or in random cuts.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Socket } from "node:net";

/** mulberry32: a small seeded PRNG, so a run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Choices driven by one session's PRNG. */
export class Dice {
  #next: () => number;
  constructor(seed: number) {
    this.#next = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

const ADDRESSES = [
  "alice@localhost",
  "bob@example.org",
  "",
  "postmaster",
  "a@[127.0.0.1]",
  '"quoted local"@localhost',
  "@route:alice@localhost",
  "x".repeat(300) + "@localhost",
  "\u00e9l\u00e8ve@localhost",
  "user%other@localhost",
];
const PARAMS = [
  "",
  " SIZE=100",
  " SIZE=99999999999",
  " BODY=8BITMIME",
  " SMTPUTF8",
  " X=Y",
  " SIZE=",
];

/** One command of a plausible session, or a line of junk. */
function command(d: Dice): string {
  switch (d.int(16)) {
    case 0:
      return `EHLO ${d.pick(["client.test", "[127.0.0.1]", "", "x".repeat(600), "a b"])}`;
    case 1:
      return `HELO ${d.pick(["client.test", ""])}`;
    case 2:
    case 3:
      return `MAIL FROM:<${d.pick(ADDRESSES)}>${d.pick(PARAMS)}`;
    case 4:
    case 5:
      return `RCPT TO:<${d.pick(ADDRESSES)}>${d.pick(["", " NOTIFY=NEVER", " ORCPT=rfc822;x@y"])}`;
    case 6:
      return "DATA";
    case 7:
      return d.pick(["RSET", "NOOP", "HELP", "VRFY alice", "EXPN list", "QUIT", "TURN", "ETRN x"]);
    case 8:
      return d.pick(["AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH LOGIN", "AUTH CRAM-MD5", "*"]);
    case 9:
      return d.pick(["BDAT 10 LAST", "STARTTLS", "XCLIENT ADDR=1.2.3.4", "XFORWARD NAME=x"]);
    case 10:
      return `MAIL FROM:${d.pick(["", "<", "bob@example.org", "<a@b> <c@d>", "<<>>"])}`;
    case 11:
      return "x".repeat(d.pick([0, 1, 511, 513, 2049, 9000]));
    case 12:
      return String.fromCharCode(...Array.from({ length: d.int(40) }, () => d.int(256)));
    case 13:
      return d.pick(["mail from:<bob@example.org>", "rcpt to:<alice@localhost>", "ehlo x"]);
    default:
      return d.pick(["NOOP", "RSET", "EHLO client.test"]);
  }
}

/** A message body after DATA: headers, a body, dot-stuffing, smuggling attempts. */
function message(d: Dice): string {
  const lines = [
    "From: <bob@example.org>",
    "Subject: fuzz",
    ...Array.from(
      { length: d.int(4) },
      () =>
        d.pick([
          "Authentication-Results: localhost; spf=pass",
          "X-Long: " + "y".repeat(d.int(5000)),
          " folded",
          "..leading dot",
          ".",
          "\n.\n",
          "\r.\r",
          "MAIL FROM:<smuggled@example.org>",
          "",
        ]),
    ),
    "",
    "body",
  ];
  return lines.join("\r\n") + "\r\n.";
}

/** Bytes of a stream: commands (a valid transaction sometimes), then mutations. */
export function stream(d: Dice): Uint8Array {
  const parts: string[] = [];
  if (d.chance(0.5)) {
    parts.push("EHLO client.test", "MAIL FROM:<bob@example.org>", "RCPT TO:<alice@localhost>");
    parts.push("DATA", message(d));
  }
  const n = 1 + d.int(20);
  for (let i = 0; i < n; i++) {
    const c = command(d);
    parts.push(c);
    if (c === "DATA" && d.chance(0.7)) parts.push(message(d));
  }
  if (d.chance(0.5)) parts.push("QUIT");
  const eol = () => d.pick(["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"]);
  let text = parts.map((p) => p + eol()).join("");
  if (d.chance(0.3)) text = text.repeat(1 + d.int(50)); // a pipelined flood
  const bytes = Array.from(Buffer.from(text, "latin1"));
  const mutations = d.chance(0.6) ? d.int(8) : 0;
  for (let i = 0; i < mutations && bytes.length > 0; i++) {
    const at = d.int(bytes.length);
    switch (d.int(4)) {
      case 0:
        bytes[at] = d.int(256);
        break;
      case 1:
        bytes.splice(at, 0, d.pick([0, 0x0d, 0x0a, 0xff, 0xc3, 0x2e, 0x3a, 0x3c]));
        break;
      case 2:
        bytes.splice(at, d.int(20));
        break;
      default:
        bytes.splice(at, 0, ...bytes.slice(at, at + d.int(50)));
    }
  }
  return Uint8Array.from(bytes);
}

/** Writes `bytes` as the dice say: in one write, line by line with pauses, or in random cuts. */
export async function send(socket: Socket, bytes: Uint8Array, d: Dice): Promise<void> {
  const mode = d.int(3);
  if (mode === 0) {
    socket.write(bytes);
    return;
  }
  let at = 0;
  while (at < bytes.byteLength && !socket.destroyed) {
    let end: number;
    if (mode === 1) {
      const lf = bytes.indexOf(0x0a, at);
      end = lf < 0 ? bytes.byteLength : lf + 1;
    } else {
      end = Math.min(bytes.byteLength, at + 1 + d.int(700));
    }
    socket.write(bytes.subarray(at, end));
    at = end;
    await new Promise((r) => setTimeout(r, d.int(3) * 10));
  }
}
