/**
 * One DNS exchange with one server: a query over UDP, and over TCP when the
 * UDP answer comes back truncated (RFC 1035 section 4.2.1; RFC 7766 section
 * 5). Built on `node:dgram` and `node:net` with dns-packet for the wire
 * format, because the `node:dns` Resolver of Deno and Bun loses information
 * mailauth needs (see `resolver.ts`).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";
import type { DecodedPacket, Packet, RecordType } from "dns-packet";
import { type DnsErrorCode } from "./errors.ts";
import { isServerAddress, type ServerAddress } from "./servers.ts";

/**
 * The EDNS(0) UDP payload size we advertise (RFC 6891 section 6.2.5). 1232
 * bytes avoids IP fragmentation on any path, the value DNS Flag Day 2020
 * settled on; larger answers come over TCP.
 */
const EDNS_UDP_SIZE = 1232;

/** TCP messages carry a two-byte length, so none is longer than this. */
const MAX_TCP_MESSAGE = 65535;

/** A question as sent. */
export interface Question {
  /** The name, as given (case preserved, no trailing dot). */
  name: string;
  /** The record type. */
  type: RecordType;
}

/** A transport failure, before any RCODE is looked at. */
export class TransportError extends Error {
  /** What went wrong, in the resolver's vocabulary. */
  readonly code: DnsErrorCode;

  /** Creates a failure with the given code. */
  constructor(code: DnsErrorCode, message: string) {
    super(message);
    this.name = "TransportError";
    this.code = code;
  }
}

/**
 * Sends `question` to `server` and returns the decoded response: over UDP
 * first, then over TCP if the UDP response has the TC bit. Rejects with a
 * TransportError (ETIMEOUT, EBADRESP, ECONNREFUSED) when no matching
 * response arrives within `udpTimeoutMs` for UDP, or before `deadline` (a
 * `Date.now()` value) for the whole exchange.
 */
export async function exchange(
  server: ServerAddress,
  question: Question,
  options: { udpTimeoutMs: number; deadline: number; edns: boolean },
): Promise<DecodedPacket> {
  const id = randomId();
  const request = dnsPacket.encode(buildQuery(id, question, options.edns));
  const matches = (response: DecodedPacket) => isResponseTo(response, id, question);
  const udpTimeout = Math.min(options.udpTimeoutMs, options.deadline - Date.now());
  const response = await udpExchange(server, request, matches, udpTimeout);
  if (!response.flag_tc) return response;
  return await tcpExchange(server, request, matches, options.deadline - Date.now());
}

function buildQuery(id: number, question: Question, edns: boolean): Packet {
  return {
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: question.type, name: question.name, class: "IN" }],
    additionals: edns
      ? [{
        type: "OPT",
        name: ".",
        udpPayloadSize: EDNS_UDP_SIZE,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        options: [],
      }]
      : [],
  };
}

/**
 * A response belongs to our query only if its ID and its question match
 * (RFC 5452 section 9.1); anything else may be a forgery or a stale answer.
 * Names are compared case-insensitively (RFC 4343).
 */
function isResponseTo(response: DecodedPacket, id: number, question: Question): boolean {
  if (response.type !== "response" || response.id !== id) return false;
  const asked = response.questions?.[0];
  return response.questions?.length === 1 && asked !== undefined &&
    asked.type === question.type && (asked.class ?? "IN") === "IN" &&
    asked.name.toLowerCase() === question.name.toLowerCase();
}

function randomId(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0]!;
}

function decode(message: Uint8Array): DecodedPacket | undefined {
  try {
    return dnsPacket.decode(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  } catch {
    return undefined;
  }
}

/**
 * One UDP exchange on a fresh socket, so every query leaves from a new random
 * port (RFC 5452 section 9.2). Datagrams from other addresses, undecodable
 * ones and ones that do not match are ignored rather than trusted; if only
 * such datagrams came, the failure is EBADRESP rather than ETIMEOUT.
 */
function udpExchange(
  server: ServerAddress,
  request: Uint8Array,
  matches: (response: DecodedPacket) => boolean,
  timeoutMs: number,
): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(server.family === 6 ? "udp6" : "udp4");
    let settled = false;
    let sawGarbage = false;
    const finish = (error: TransportError | undefined, response?: DecodedPacket) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        socket.close();
      } catch {
        // Not bound yet: nothing to close.
      }
      if (error) reject(error);
      else resolve(response!);
    };
    const timer = setTimeout(() => {
      finish(
        sawGarbage
          ? new TransportError("EBADRESP", "No valid DNS response over UDP")
          : new TransportError("ETIMEOUT", "DNS query over UDP timed out"),
      );
    }, Math.max(timeoutMs, 0));
    socket.on("error", (err) => finish(socketError(err)));
    socket.on("message", (message, remote) => {
      if (!isServerAddress(server, remote.address, remote.port)) return;
      const response = decode(message);
      if (response && matches(response)) finish(undefined, response);
      else sawGarbage = true;
    });
    socket.send(request, server.port, server.host, (err) => {
      if (err) finish(socketError(err));
    });
  });
}

/**
 * One TCP exchange: a two-byte length, then the message (RFC 1035 section
 * 4.2.2). A connection that closes early or answers something else is
 * EBADRESP, since unlike UDP nobody else can inject into it.
 */
function tcpExchange(
  server: ServerAddress,
  request: Uint8Array,
  matches: (response: DecodedPacket) => boolean,
  timeoutMs: number,
): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: server.host, port: server.port });
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (error: TransportError | undefined, response?: DecodedPacket) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(response!);
    };
    const timer = setTimeout(
      () => finish(new TransportError("ETIMEOUT", "DNS query over TCP timed out")),
      Math.max(timeoutMs, 0),
    );
    socket.on("error", (err) => finish(socketError(err)));
    socket.on("connect", () => {
      const frame = Buffer.alloc(2 + request.byteLength);
      frame.writeUInt16BE(request.byteLength, 0);
      frame.set(request, 2);
      socket.write(frame);
    });
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.byteLength;
      if (received < 2) return;
      const buffered = Buffer.concat(chunks);
      const length = buffered.readUInt16BE(0);
      if (received > 2 + MAX_TCP_MESSAGE || received < 2 + length) return;
      const response = decode(buffered.subarray(2, 2 + length));
      if (response && matches(response)) finish(undefined, response);
      else finish(new TransportError("EBADRESP", "Malformed DNS response over TCP"));
    });
    socket.on("end", () => {
      finish(new TransportError("EBADRESP", "DNS server closed the TCP connection early"));
    });
  });
}

function socketError(err: unknown): TransportError {
  const message = err instanceof Error ? err.message : String(err);
  return new TransportError("ECONNREFUSED", `Cannot reach DNS server: ${message}`);
}
