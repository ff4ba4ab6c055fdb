/**
 * A small authoritative DNS server for tests: real UDP and TCP sockets on a
 * loopback address and a random port, the real wire format (dns-packet),
 * and a zone given as a plain object. It can also misbehave on purpose:
 * stay silent, answer SERVFAIL or REFUSED, send garbage, truncate every UDP
 * answer so the client must retry over TCP, or reject EDNS with FORMERR.
 *
 * @example
 * ```ts ignore
 * const dns = await startDnsServer({
 *   "example.test": { TXT: [["v=spf1 ip4:192.0.2.0/24 ", "-all"]], MX: [{ priority: 10, exchange: "mx.example.test" }] },
 *   "mx.example.test": { A: ["192.0.2.25"] },
 * });
 * const resolver = new DnsResolver({ servers: [dns.address] });
 * // …
 * await dns.close();
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, Packet, RecordType } from "dns-packet";

/** How the server (or one name) behaves. */
export type ServerMode =
  /** Answer from the zone. */
  | "normal"
  /** Never answer (UDP and TCP): the client times out. */
  | "timeout"
  /** Answer SERVFAIL (RCODE 2). */
  | "servfail"
  /** Answer REFUSED (RCODE 5). */
  | "refused"
  /** Answer bytes that are not a DNS message. */
  | "garbage"
  /** Over UDP, answer with the TC bit and no records; over TCP, answer in full. */
  | "truncate"
  /** Answer FORMERR to queries with an EDNS OPT record, like a pre-EDNS server. */
  | "noedns";

/** The records of one name. */
export interface ZoneEntry {
  /** IPv4 addresses. */
  A?: string[];
  /** IPv6 addresses. */
  AAAA?: string[];
  /**
   * TXT records: a string is a record of one character-string, an array a
   * record of several. Strings over 255 bytes are split into 255-byte pieces.
   */
  TXT?: Array<string | string[]>;
  /** MX records. */
  MX?: Array<{ priority: number; exchange: string }>;
  /** The name this one is an alias of. */
  CNAME?: string;
  /** PTR targets, for names under in-addr.arpa or ip6.arpa. */
  PTR?: string[];
  /** TTL of every record of the name, in seconds. Default 300. */
  ttl?: number;
  /** Misbehaviour for queries of this name only. */
  mode?: ServerMode;
}

/** Names (any case, no trailing dot) to their records. */
export type Zone = Record<string, ZoneEntry>;

/** Settings of a test server. */
export interface DnsServerOptions {
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** TTL and MINIMUM of the SOA sent with NXDOMAIN and NODATA; default 60. */
  negativeTtl?: number;
  /** MINIMUM of that SOA when it is to differ from its TTL; default `negativeTtl`. */
  soaMinimum?: number;
  /** False to send negative answers without an SOA (uncacheable, RFC 2308 section 5). */
  soa?: boolean;
  /**
   * False to answer a CNAME alone, as a server whose zone does not hold the
   * target would; default true, which adds the target's records (in-zone).
   */
  chaseCnames?: boolean;
  /**
   * The UDP port to bind on each attempt (0 = any free one); TCP then takes
   * the same number. Default: always 0. Tests of the retry inject it.
   */
  pickPort?: (attempt: number) => number;
}

/** Port pairs tried before giving up: a clash is rare, ten in a row is a real problem. */
const BIND_ATTEMPTS = 10;

/** One query the server received. */
export interface LoggedQuery {
  /** The name asked for, lower-cased. */
  name: string;
  /** The record type. */
  type: string;
  /** How it came. */
  transport: "udp" | "tcp";
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** A running test server. */
export class TestDnsServer {
  /** The zone served; tests may change it between queries. */
  zone: Zone;
  /** Misbehaviour for every name, unless a name has its own. */
  mode: ServerMode = "normal";
  /** Every query received, in order. */
  readonly queries: LoggedQuery[] = [];
  #udp: dgram.Socket;
  #tcp: net.Server;
  #connections = new Set<net.Socket>();
  #options: Required<DnsServerOptions>;

  /** Use `startDnsServer()`. */
  constructor(zone: Zone, udp: dgram.Socket, tcp: net.Server, options: Required<DnsServerOptions>) {
    this.zone = zone;
    this.#udp = udp;
    this.#tcp = tcp;
    this.#options = options;
    udp.on("message", (message, remote) => this.#onDatagram(message, remote));
    tcp.on("connection", (socket) => this.#onConnection(socket));
  }

  /** The UDP and TCP port. */
  get port(): number {
    return this.#udp.address().port;
  }

  /** `host:port` (or `[v6]:port`), as the resolver's `servers` option takes it. */
  get address(): string {
    const host = this.#options.host;
    return host.includes(":") ? `[${host}]:${this.port}` : `${host}:${this.port}`;
  }

  /** Number of queries received, optionally only for a name and type. */
  count(name?: string, type?: string): number {
    return this.queries.filter((q) =>
      (name === undefined || q.name === name.toLowerCase()) &&
      (type === undefined || q.type === type)
    ).length;
  }

  /** Stops listening and drops open TCP connections. */
  async close(): Promise<void> {
    for (const socket of this.#connections) socket.destroy();
    await new Promise<void>((resolve) => this.#udp.close(() => resolve()));
    await new Promise<void>((resolve) => this.#tcp.close(() => resolve()));
  }

  #onDatagram(message: Buffer, remote: dgram.RemoteInfo): void {
    const query = decodeQuery(message);
    if (!query) return;
    const reply = this.#reply(query, "udp");
    if (reply) this.#udp.send(reply, remote.port, remote.address);
  }

  #onConnection(socket: net.Socket): void {
    this.#connections.add(socket);
    socket.on("close", () => this.#connections.delete(socket));
    socket.on("error", () => socket.destroy());
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      // Several queries may share a connection (RFC 7766 section 6.2.1).
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        const query = decodeQuery(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
        const reply = query ? this.#reply(query, "tcp") : undefined;
        if (!reply) continue;
        const frame = Buffer.alloc(2 + reply.length);
        frame.writeUInt16BE(reply.length, 0);
        reply.copy(frame, 2);
        socket.write(frame);
      }
    });
  }

  /** The bytes to send back, or undefined to stay silent. */
  #reply(query: DecodedPacket, transport: "udp" | "tcp"): Buffer | undefined {
    const question = query.questions![0]!;
    const name = bare(question.name).toLowerCase();
    this.queries.push({ name, type: question.type, transport });
    const mode = this.#entry(name)?.mode ?? this.mode;
    const opt = (query.additionals ?? []).find((a) => a.type === "OPT");
    const response: Packet = {
      type: "response",
      id: query.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED),
      questions: [question],
      answers: [],
      authorities: [],
    };
    switch (mode) {
      case "timeout":
        return undefined;
      case "garbage":
        return Buffer.from("\x13\x37 this is not a DNS message");
      case "servfail":
        return this.#encode(response, RCODE.SERVFAIL);
      case "refused":
        return this.#encode(response, RCODE.REFUSED);
      case "noedns":
        if (opt) return this.#encode(response, RCODE.FORMERR);
        break;
      case "truncate":
        if (transport === "udp") {
          response.flags! |= dnsPacket.TRUNCATED_RESPONSE;
          return this.#encode(response, RCODE.NOERROR);
        }
        break;
    }
    const rcode = this.#answer(name, question.type, response);
    const bytes = this.#encode(response, rcode);
    const limit = opt && opt.type === "OPT" ? Math.max(512, opt.udpPayloadSize) : 512;
    if (transport === "udp" && bytes.length > limit) {
      // RFC 2181 section 9: too big for UDP, so say so and let the client use TCP.
      response.answers = [];
      response.authorities = [];
      response.flags! |= dnsPacket.TRUNCATED_RESPONSE;
      return this.#encode(response, rcode);
    }
    return bytes;
  }

  /** Fills the answer (and, for negative answers, authority) section; returns the RCODE. */
  #answer(name: string, type: RecordType, response: Packet): number {
    let owner = name;
    for (let hop = 0; hop < 8; hop++) {
      const entry = this.#entry(owner);
      if (!entry) {
        if (hop > 0 && !this.#options.chaseCnames) return RCODE.NOERROR;
        if (this.#exists(owner)) return this.#negative(response, RCODE.NOERROR);
        return this.#negative(response, RCODE.NXDOMAIN);
      }
      const ttl = entry.ttl ?? 300;
      if (entry.CNAME !== undefined && type !== "CNAME") {
        response.answers!.push({ name: owner, type: "CNAME", ttl, data: entry.CNAME });
        if (!this.#options.chaseCnames) return RCODE.NOERROR;
        owner = bare(entry.CNAME).toLowerCase();
        continue;
      }
      const records = recordsOf(owner, type, entry, ttl);
      if (records.length === 0) return this.#negative(response, RCODE.NOERROR);
      response.answers!.push(...records);
      return RCODE.NOERROR;
    }
    return RCODE.SERVFAIL;
  }

  #negative(response: Packet, rcode: number): number {
    if (this.#options.soa) {
      const ttl = this.#options.negativeTtl;
      response.authorities!.push({
        name: "test",
        type: "SOA",
        ttl,
        data: {
          mname: "ns.test",
          rname: "hostmaster.test",
          serial: 1,
          refresh: 3600,
          retry: 600,
          expire: 86400,
          minimum: this.#options.soaMinimum,
        },
      });
    }
    return rcode;
  }

  #entry(name: string): ZoneEntry | undefined {
    for (const [key, entry] of Object.entries(this.zone)) {
      if (bare(key).toLowerCase() === name) return entry;
    }
    return undefined;
  }

  /** A name with no records exists if a name below it does (RFC 8020). */
  #exists(name: string): boolean {
    return Object.keys(this.zone).some((key) => bare(key).toLowerCase().endsWith(`.${name}`));
  }

  #encode(response: Packet, rcode: number): Buffer {
    return dnsPacket.encode({ ...response, flags: (response.flags ?? 0) | rcode });
  }
}

/**
 * Starts a server for `zone` on a random port of `options.host` (UDP and
 * TCP, the same number). UDP picks the port; when TCP finds that number
 * taken by another process (EADDRINUSE, seen on busy machines), both are
 * released and a new pair is tried, up to {@linkcode BIND_ATTEMPTS} times.
 */
export async function startDnsServer(
  zone: Zone,
  options: DnsServerOptions = {},
): Promise<TestDnsServer> {
  const settings: Required<DnsServerOptions> = {
    host: options.host ?? "127.0.0.1",
    negativeTtl: options.negativeTtl ?? 60,
    soaMinimum: options.soaMinimum ?? options.negativeTtl ?? 60,
    soa: options.soa ?? true,
    chaseCnames: options.chaseCnames ?? true,
    pickPort: options.pickPort ?? (() => 0),
  };
  let lastError: unknown;
  for (let attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
    const pair = await bindPair(settings.host, settings.pickPort(attempt));
    if ("udp" in pair) return new TestDnsServer(zone, pair.udp, pair.tcp, settings);
    lastError = pair.error;
  }
  throw new Error(`Cannot bind a UDP and TCP port pair in ${BIND_ATTEMPTS} attempts`, {
    cause: lastError,
  });
}

/**
 * Binds UDP to `port` (0: any) and TCP to the number UDP got. A port taken
 * for either is an outcome to retry (`error`); any other failure throws.
 */
async function bindPair(
  host: string,
  port: number,
): Promise<{ udp: dgram.Socket; tcp: net.Server } | { error: unknown }> {
  const udp = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(port, host, () => resolve());
    });
  } catch (err) {
    try {
      udp.close();
    } catch {
      // Never bound: nothing to close.
    }
    if (isAddressInUse(err)) return { error: err };
    throw err;
  }
  const tcp = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen(udp.address().port, host, () => resolve());
    });
  } catch (err) {
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (isAddressInUse(err)) return { error: err };
    throw err;
  }
  return { udp, tcp };
}

function isAddressInUse(err: unknown): boolean {
  return typeof err === "object" && err !== null &&
    (err as { code?: unknown }).code === "EADDRINUSE";
}

function recordsOf(name: string, type: RecordType, entry: ZoneEntry, ttl: number): Answer[] {
  switch (type) {
    case "A":
      return (entry.A ?? []).map((data) => ({ name, type, ttl, data }));
    case "AAAA":
      return (entry.AAAA ?? []).map((data) => ({ name, type, ttl, data }));
    case "PTR":
      return (entry.PTR ?? []).map((data) => ({ name, type, ttl, data }));
    case "CNAME":
      return entry.CNAME === undefined ? [] : [{ name, type, ttl, data: entry.CNAME }];
    case "MX":
      return (entry.MX ?? []).map((mx) => ({
        name,
        type,
        ttl,
        data: { preference: mx.priority, exchange: mx.exchange },
      }));
    case "TXT":
      return (entry.TXT ?? []).map((record) => ({
        name,
        type,
        ttl,
        data: (Array.isArray(record) ? record : [record]).flatMap(splitCharacterString),
      }));
    default:
      return [];
  }
}

/** A character-string holds at most 255 bytes (RFC 1035 section 3.3). */
function splitCharacterString(text: string): Buffer[] {
  const bytes = Buffer.from(text);
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 255) pieces.push(bytes.subarray(i, i + 255));
  return pieces.length > 0 ? pieces : [Buffer.alloc(0)];
}

function decodeQuery(message: Buffer): DecodedPacket | undefined {
  try {
    const query = dnsPacket.decode(message);
    return query.type === "query" && query.questions?.length === 1 ? query : undefined;
  } catch {
    return undefined;
  }
}

function bare(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}
