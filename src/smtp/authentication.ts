/**
 * Message authentication in the SMTP transaction: SPF at MAIL FROM (RFC
 * 7208) with the configured action per result, and DKIM, ARC and DMARC
 * after DATA, run on the spooled file, ending in the header fields that
 * record the verdict.
 *
 * @module
 */

import {
  authenticateMessage,
  type AuthSummary,
  checkSpf,
  decideDmarc,
  decideSpf,
  inNetworks,
  type SpfVerdict,
  type SpfVerdictCache,
} from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import type { ResolveFunction } from "../dns/mod.ts";
import type { Logger } from "../log/mod.ts";
import { reply, type SmtpReply } from "./reply.ts";

/** What the checks need. */
export interface AuthDeps {
  hostname: string;
  resolver: ResolveFunction;
  settings: Config["auth"];
  isLocalDomain: (domain: string) => boolean;
  logger: Logger;
  /** Remembered SPF verdicts, shared by the policies that use the same resolver. */
  spfCache?: SpfVerdictCache | undefined;
}

/**
 * True when the client's mail is checked: it is neither authenticated nor
 * from a trusted network.
 */
export function isChecked(deps: AuthDeps, ip: string, authenticated: boolean): boolean {
  return !authenticated && !inNetworks(ip, deps.settings.trustedNetworks);
}

/** A refusal, with the reason for the mail log. */
export interface AuthRefusal {
  reply: SmtpReply;
  reason: string;
}

/**
 * SPF for MAIL FROM. Returns null as the verdict when the client is not
 * checked (SPF off, an authenticated client, a trusted network).
 */
export async function spfAtMailFrom(
  deps: AuthDeps,
  client: { sender: string; ip: string; helo: string; authenticated: boolean },
): Promise<{ verdict: SpfVerdict | null; refusal?: AuthRefusal }> {
  const policy = deps.settings.spf;
  if (!policy || !isChecked(deps, client.ip, client.authenticated)) {
    return { verdict: null };
  }
  let verdict: SpfVerdict;
  try {
    const check = {
      sender: client.sender,
      ip: client.ip,
      helo: client.helo,
      hostname: deps.hostname,
      resolver: deps.resolver,
    };
    verdict = deps.spfCache ? await deps.spfCache.check(check) : await checkSpf(check);
  } catch (err) {
    // checkSpf reports DNS trouble as temperror; this is for the unexpected.
    deps.logger.error("SPF check failed", { error: String(err), sender: client.sender });
    return {
      verdict: null,
      refusal: {
        reply: reply(451, "4.4.3", "SPF check failed, try again later"),
        reason: "spf_error",
      },
    };
  }
  const decision = decideSpf(verdict, policy, deps.isLocalDomain);
  if (decision.action === "accept" || !decision.reply) return { verdict };
  return { verdict, refusal: { reply: decision.reply, reason: decision.reason } };
}

/** The verdict after DATA: header fields to add and, perhaps, a refusal. */
export interface DataAuthentication {
  /** Header fields (CRLF-terminated) for the top of the message. */
  head: string;
  summary?: AuthSummary;
  refusal?: AuthRefusal;
  /** `spf=… dkim=… dmarc=…` for the mail log. */
  results: Record<string, string>;
}

/**
 * DKIM, ARC and DMARC on the spooled message (from `offset` of `path`),
 * with the SPF verdict from MAIL FROM. Mail from authenticated clients and
 * trusted networks is not checked: it is ours (as OpenDMARC's IgnoreHosts
 * and Postfix's mynetworks have it).
 */
export async function authenticateAfterData(
  deps: AuthDeps,
  /**
   * Where the message is, asked only when it is read: a message from a
   * client that is not checked stays unwritten until its commit.
   */
  message: () => Promise<{ path: string; offset: number; read?: () => AsyncIterable<Uint8Array> }>,
  client: {
    sender: string;
    ip: string;
    helo: string;
    spf: SpfVerdict | null;
    authenticated: boolean;
  },
): Promise<DataAuthentication> {
  const results: Record<string, string> = {};
  if (!isChecked(deps, client.ip, client.authenticated)) return { head: "", results };
  if (client.spf) results.spf = client.spf.result;
  // RFC 7208 section 9.1: Received-SPF goes above the trace headers.
  const receivedSpf = client.spf ? `${client.spf.receivedSpf}\r\n` : "";
  if (!deps.settings.verify) return { head: receivedSpf, results };
  // Outside the try: a spool that cannot be flushed fails the message,
  // it is no failed check.
  const { path, offset, read } = await message();
  let summary: AuthSummary;
  try {
    summary = await authenticateMessage({
      path,
      offset,
      ...(read ? { read } : {}),
      sender: client.sender,
      ip: client.ip,
      helo: client.helo,
      hostname: deps.hostname,
      resolver: deps.resolver,
      spf: client.spf,
    });
  } catch (err) {
    deps.logger.error("message authentication failed", { error: String(err) });
    return { head: receivedSpf, results };
  }
  results.dkim = summary.dkim.map((d) => d.result).join(",") || "none";
  // One result per Author Domain (RFC 7489 section 6.6.1), as dkim= has one per signature.
  results.dmarc = summary.dmarcVerdicts.map((v) => v.result).join(",") ||
    (summary.fromFields > 1 ? "permerror" : "none");
  const head = `${summary.authenticationResults}\r\n${receivedSpf}`;
  const decision = decideDmarc(summary, deps.settings.dmarcReject);
  if (decision.action === "accept") return { head, summary, results };
  return { head, summary, results, refusal: { reply: decision.reply, reason: decision.reason } };
}
