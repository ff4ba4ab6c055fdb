/**
 * Trusted networks: client addresses whose mail is not SPF-checked (the
 * local machine, an operator's own hosts), as Postfix's `mynetworks`.
 *
 * @module
 */

import { isIPv4, isIPv6 } from "node:net";

/** A parsed `address/prefix` block. */
export interface Network {
  /** The block as written, for logs. */
  text: string;
  /** 4 or 16 bytes. */
  bytes: Uint8Array;
  prefix: number;
}

/**
 * Parses `192.0.2.0/24`, `2001:db8::/32`, or a single address (a /32 or
 * /128 block).
 *
 * @throws {SyntaxError} naming the text when it is not such a block.
 */
export function parseNetwork(text: string): Network {
  const [address = "", prefixText, extra] = text.trim().split("/");
  const bytes = addressBytes(address);
  if (!bytes || extra !== undefined) {
    throw new SyntaxError(`Cannot parse network "${text}": expected an address or address/prefix`);
  }
  const max = bytes.length * 8;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d+$/.test(prefixText ?? String(max)) || prefix > max) {
    throw new SyntaxError(`Cannot parse network "${text}": the prefix must be 0 to ${max}`);
  }
  // A block of IPv4-mapped addresses (::ffff:0:0/96, RFC 4291 section
  // 2.5.5.2) is the IPv4 block it maps: a client's mapped address is
  // compared as IPv4 (below), so kept as IPv6 the block matched nothing.
  if (isMapped(bytes) && prefix >= 96) {
    return { text, bytes: bytes.subarray(12), prefix: prefix - 96 };
  }
  return { text, bytes, prefix };
}

/** True when `ip` (IPv4, IPv6 or IPv4-mapped IPv6) is inside one of `networks`. */
export function inNetworks(ip: string, networks: readonly Network[]): boolean {
  const bytes = clientBytes(ip);
  if (!bytes) return false;
  return networks.some((n) => n.bytes.length === bytes.length && samePrefix(n, bytes));
}

function samePrefix(network: Network, bytes: Uint8Array): boolean {
  let bits = network.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((network.bytes[i]! & mask) !== (bytes[i]! & mask)) return false;
  }
  return true;
}

/** The address last parsed by {@linkcode clientBytes}, and its bytes. */
let lastAddress: string | undefined;
let lastBytes: Uint8Array | undefined;

/**
 * The bytes of a client's address. A session asks about the same client
 * at connect, MAIL, DATA and in the checks after it, and parsing is the
 * costly part (node:net's isIPv4 and isIPv6 are regular expressions), so
 * the last answer is kept. Its bytes are only ever read.
 */
function clientBytes(ip: string): Uint8Array | undefined {
  if (ip !== lastAddress) {
    const bytes = addressBytes(unmapped(ip));
    // The mapped form in hex (::ffff:c000:201) as well as dotted.
    lastBytes = bytes && isMapped(bytes) ? bytes.subarray(12) : bytes;
    lastAddress = ip;
  }
  return lastBytes;
}

/** 16 bytes of an IPv4-mapped IPv6 address: 80 zero bits, then 16 one bits. */
function isMapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16 || bytes[10] !== 0xff || bytes[11] !== 0xff) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** `::ffff:192.0.2.1` is the IPv4 client 192.0.2.1 on a dual-stack socket. */
function unmapped(ip: string): string {
  const match = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return match ? match[1]! : ip;
}

function addressBytes(address: string): Uint8Array | undefined {
  if (isIPv4(address)) return new Uint8Array(address.split(".").map(Number));
  if (!isIPv6(address)) return undefined;
  let text = address;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    text = text.slice(0, -v4[1]!.length) +
      `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = tail === undefined
    ? headGroups
    : [...headGroups, ...Array<string>(missing).fill("0"), ...tailGroups];
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  });
  return bytes;
}
