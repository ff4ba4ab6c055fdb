/**
 * What to do with a message after DMARC: accept it, refuse it (550) or ask
 * the client to try again (451) when the refusal would rest on a temporary
 * DNS failure.
 *
 * @module
 */

import { reply, type SmtpReply } from "../smtp/reply.ts";
import type { AuthSummary } from "./authenticate.ts";
import type { DmarcVerdict } from "./dmarc.ts";

/** The decision; `reason` names it in the mail log and the refusal counter. */
export type DmarcDecision =
  | { action: "accept" }
  | { action: "reject" | "defer"; reply: SmtpReply; reason: string };

/**
 * Decides on a message from its authentication summary. With `enforce`
 * false (`auth.dmarc_reject: false`) every message is accepted.
 */
export function decideDmarc(summary: AuthSummary, enforce: boolean): DmarcDecision {
  if (!enforce) return { action: "accept" };
  if (summary.fromFields > 1) {
    // RFC 5322 section 3.6 allows one From field, and RFC 7489 section
    // 6.6.1 lets a receiver reject a message with several: the signature
    // may cover one while the reader is shown another. 5.7.1 (RFC 3463:
    // delivery not authorized, message refused), as for any DMARC refusal:
    // the message is refused by policy, not for being unreadable.
    return {
      action: "reject",
      reason: "dmarc_multiple_from",
      reply: reply(550, "5.7.1", "Message rejected: several From fields (RFC 5322 section 3.6)"),
    };
  }
  if (
    summary.dmarcVerdicts.length === 0 && summary.authorDomainsUnchecked === 0 &&
    summary.fromHasText
  ) {
    // A From field with text but no author domain to evaluate, such as an
    // encoded word that a mail reader shows decoded as "ceo@bank.example":
    // DMARC cannot protect a reader from an author it cannot find, so the
    // message is refused (RFC 5322 section 3.6 requires a mailbox there;
    // RFC 7489 section 6.6.1). An empty or missing From shows the reader no
    // author to be deceived by and is left to other checks.
    return {
      action: "reject",
      reason: "dmarc_no_author",
      reply: reply(
        550,
        "5.7.1",
        "Message rejected: no valid author address in From (RFC 5322 section 3.6)",
      ),
    };
  }
  if (summary.authorDomainsUnchecked > 0) {
    return {
      action: "reject",
      reason: "dmarc_too_many_authors",
      reply: reply(550, "5.7.1", "Message rejected: too many author domains in From to check"),
    };
  }
  // RFC 7489 section 6.6.1: with several Author Domains, the strictest
  // policy among the checks that fail applies; a certain refusal wins
  // over one that a temporary failure makes uncertain.
  let deferred: DmarcDecision | undefined;
  for (const verdict of summary.dmarcVerdicts) {
    if (verdict.result === "fail" && verdict.policy === "reject") {
      const cause = temporaryCause(summary, verdict);
      if (cause === undefined) return rejection(verdict);
      deferred ??= deferral(verdict, cause);
    } else if (verdict.result === "temperror" && (verdict.policy === "reject" || !verdict.policy)) {
      // The policy, or an alignment it needs, could not be looked up.
      deferred ??= deferral(verdict, "dmarc");
    }
  }
  return deferred ?? { action: "accept" };
}

function rejection(verdict: DmarcVerdict): DmarcDecision {
  const domain = verdict.policyDomain ?? verdict.headerFrom;
  return {
    action: "reject",
    reason: "dmarc_reject",
    // RFC 7489 section 6.6.3 lets the receiver reject; RFC 3463's 5.7.1
    // says delivery is not authorized by policy.
    reply: reply(550, "5.7.1", `Message rejected: DMARC policy of ${domain} says reject`),
  };
}

function deferral(verdict: DmarcVerdict, cause: "dkim" | "spf" | "dmarc"): DmarcDecision {
  const domain = verdict.policyDomain ?? verdict.headerFrom;
  // A DKIM key that could not be fetched is RFC 3463's X.7.5 (cryptographic
  // failure: a key was not available); a failed policy or SPF lookup is
  // X.4.3 (directory server failure), as SPF temperror at MAIL FROM is.
  const enhanced = cause === "dkim" ? "4.7.5" : "4.4.3";
  return {
    action: "defer",
    reason: "dmarc_temperror",
    reply: reply(
      451,
      enhanced,
      `DMARC of ${domain} could not be checked (temporary DNS failure), try again later`,
    ),
  };
}

/**
 * What temporary failure could have turned a DMARC fail into a pass: a DKIM
 * signature of a related domain whose key lookup failed, or SPF temperror
 * (RFC 7489 section 6.6.2 leaves these to the receiver; a 4xx makes the
 * sender try again instead of losing the message).
 */
function temporaryCause(
  summary: AuthSummary,
  verdict: DmarcVerdict,
): "dkim" | "spf" | undefined {
  const author = verdict.headerFrom.toLowerCase().replace(/\.$/, "");
  if (
    summary.dkim.some((d) =>
      d.result === "temperror" && (d.domain === undefined || related(d.domain, author))
    )
  ) {
    return "dkim";
  }
  if (summary.spf?.result === "temperror" && related(summary.spf.domain, author)) return "spf";
  return undefined;
}

/**
 * True when `domain` could align with `author` under relaxed alignment:
 * the same name, one below the other, or the same last two labels (an
 * Organizational Domain is found by a DNS tree walk, so this stays on the
 * side of "could").
 */
function related(domain: string, author: string): boolean {
  const d = domain.toLowerCase().replace(/\.$/, "");
  if (d === author || d.endsWith(`.${author}`) || author.endsWith(`.${d}`)) return true;
  const tail = (name: string) => name.split(".").slice(-2).join(".");
  return d.includes(".") && tail(d) === tail(author);
}
