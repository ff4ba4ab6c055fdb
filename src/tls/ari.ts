/**
 * ACME Renewal Information (RFC 9773): the certificate identifier and the
 * CA's suggested renewal window. acme-client does not implement it, so the
 * one GET it needs is here, its answer checked with valibot.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import * as v from "valibot";

/** The CA's suggestion (RFC 9773 section 4.2). */
export interface RenewalWindow {
  /** ms since the epoch. */
  start: number;
  end: number;
  /** When to ask again (Retry-After), ms since the epoch. */
  retryAfter: number | undefined;
}

/** RFC 9773 section 4.2: the renewalInfo response body. */
const RenewalInfoSchema = v.pipe(
  v.object({
    suggestedWindow: v.object({
      start: v.pipe(v.string(), v.isoTimestamp()),
      end: v.pipe(v.string(), v.isoTimestamp()),
    }),
    explanationURL: v.optional(v.string()),
  }),
  v.check(
    (info) => Date.parse(info.suggestedWindow.end) > Date.parse(info.suggestedWindow.start),
    "the window ends before it starts",
  ),
);

const base64url = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/**
 * The ARI certificate identifier (RFC 9773 section 4.1): the base64url
 * keyIdentifier of the Authority Key Identifier extension, a dot, and the
 * base64url DER bytes of the serial number.
 *
 * @throws {TypeError} when the certificate has no Authority Key Identifier.
 */
export function ariCertId(certPem: string): string {
  const cert = new X509Certificate(certPem);
  const aki = authorityKeyId(new Uint8Array(cert.raw));
  if (aki === undefined) {
    throw new TypeError("Cannot identify the certificate: it has no authority key identifier");
  }
  let hex = cert.serialNumber.replace(/[^0-9a-fA-F]/g, "");
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let serial = Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
  // DER INTEGER: a leading zero byte keeps a positive number's high bit clear.
  if ((serial[0] ?? 0) & 0x80) serial = Uint8Array.from([0, ...serial]);
  return `${base64url(aki)}.${base64url(serial)}`;
}

/** The keyIdentifier of the authorityKeyIdentifier extension (OID 2.5.29.35). */
function authorityKeyId(der: Uint8Array): Uint8Array | undefined {
  const oid = [0x06, 0x03, 0x55, 0x1d, 0x23];
  outer: for (let i = 0; i + oid.length < der.length; i++) {
    for (let j = 0; j < oid.length; j++) if (der[i + j] !== oid[j]) continue outer;
    let at = i + oid.length;
    if (der[at] === 0x01) at += 2 + der[at + 1]!; // critical BOOLEAN
    if (der[at] !== 0x04) return undefined; // extnValue OCTET STRING
    at = skipHeader(der, at);
    if (der[at] !== 0x30) return undefined; // AuthorityKeyIdentifier SEQUENCE
    at = skipHeader(der, at);
    if (der[at] !== 0x80) return undefined; // [0] keyIdentifier
    const length = der[at + 1]!;
    if (length & 0x80) return undefined;
    return der.slice(at + 2, at + 2 + length);
  }
  return undefined;
}

/** The offset of a DER element's content. */
function skipHeader(der: Uint8Array, at: number): number {
  const first = der[at + 1]!;
  return first & 0x80 ? at + 2 + (first & 0x7f) : at + 2;
}

/** The ACME directory (RFC 8555 section 7.1.1) names a renewalInfo resource (RFC 9773 section 3). */
export function offersRenewalInfo(directory: unknown): boolean {
  return typeof directory === "object" && directory !== null &&
    typeof (directory as { renewalInfo?: unknown }).renewalInfo === "string";
}

/** A minimal HTTP GET: status, parsed JSON body, and the Retry-After header. */
export type JsonGet = (url: string) => Promise<{
  status: number;
  data: unknown;
  retryAfter: string | undefined;
}>;

/**
 * Asks the CA's renewalInfo resource for the window of `certPem`.
 * Undefined when the answer is not a usable window.
 */
export async function fetchRenewalWindow(
  get: JsonGet,
  renewalInfoUrl: string,
  certPem: string,
  now: number,
): Promise<RenewalWindow | undefined> {
  const url = `${renewalInfoUrl.replace(/\/+$/, "")}/${ariCertId(certPem)}`;
  const answer = await get(url);
  if (answer.status !== 200) return undefined;
  const parsed = v.safeParse(RenewalInfoSchema, answer.data);
  if (!parsed.success) return undefined;
  return {
    start: Date.parse(parsed.output.suggestedWindow.start),
    end: Date.parse(parsed.output.suggestedWindow.end),
    retryAfter: retryAfterMs(answer.retryAfter, now),
  };
}

/** Retry-After as seconds or an HTTP date (RFC 9110 section 10.2.3). */
function retryAfterMs(header: string | undefined, now: number): number | undefined {
  if (header === undefined) return undefined;
  if (/^\d+$/.test(header.trim())) return now + Number(header.trim()) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : date;
}
