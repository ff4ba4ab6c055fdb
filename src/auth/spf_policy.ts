/**
 * What to do with an SPF result at MAIL FROM. The defaults follow chasquid:
 * only `fail` is rejected, `temperror` is deferred, everything else is
 * accepted and tagged with the Received-SPF and Authentication-Results
 * fields; on top of that, mail that claims one of our own domains and fails
 * SPF is rejected.
 *
 * Own domains reject `softfail` as well as `fail`. Our users reach us by
 * authenticated submission, which is not SPF-checked at all, so mail from
 * outside that claims our domain from a host our own record does not list
 * is forged, whichever qualifier the operator put on `all`; and `~all` is
 * what most operators publish (and what many guides recommend while a
 * domain's mail setup settles), so rejecting only `-all` failures would
 * leave the common case open.
 *
 * @module
 */

import type { SmtpReply } from "../smtp/reply.ts";
import { replySafe } from "./header_text.ts";
import type { SpfResult, SpfVerdict } from "./spf.ts";

/** What happens to the transaction. */
export type SpfAction =
  /** Go on; the verdict is recorded in the header fields. */
  | "accept"
  /** Refuse MAIL FROM with a 5xx reply. */
  | "reject"
  /** Refuse MAIL FROM with a 4xx reply; the client retries later. */
  | "defer";

/** The configurable part of the policy. */
export interface SpfPolicy {
  /** The action for each result. */
  actions: Record<SpfResult, SpfAction>;
  /** Results that are rejected when the checked domain is one of ours, whatever `actions` says. */
  localDomainReject: readonly SpfResult[];
}

/** chasquid-like defaults; see the module documentation. */
export const DEFAULT_SPF_POLICY: Readonly<SpfPolicy> = Object.freeze({
  actions: Object.freeze({
    pass: "accept",
    // RFC 7208 section 8.4: a fail SHOULD be rejected with 550 (5.7.23, RFC 7372).
    fail: "reject",
    // RFC 7208 section 8.5: softfail SHOULD NOT be rejected on its own.
    softfail: "accept",
    neutral: "accept",
    none: "accept",
    // RFC 7208 section 8.6: temperror MAY be deferred with a 4xx reply.
    temperror: "defer",
    // RFC 7208 section 8.7: permerror may be rejected; like chasquid we accept it, since the
    // mistake is in the sender's DNS and the mail itself is no more suspect than with none.
    permerror: "accept",
  }),
  localDomainReject: Object.freeze(["fail", "softfail"] as SpfResult[]),
}) as Readonly<SpfPolicy>;

/** Overrides for the defaults, as the configuration gives them. */
export interface SpfPolicyOverrides {
  /** Actions for some results; the others keep their default. */
  actions?: Partial<Record<SpfResult, SpfAction>>;
  /** Replaces the list of results rejected for our own domains ([] turns it off). */
  localDomainReject?: readonly SpfResult[];
}

/** The default policy with `overrides` applied. */
export function spfPolicy(overrides: SpfPolicyOverrides = {}): SpfPolicy {
  return {
    actions: { ...DEFAULT_SPF_POLICY.actions, ...overrides.actions },
    localDomainReject: [...(overrides.localDomainReject ?? DEFAULT_SPF_POLICY.localDomainReject)],
  };
}

/** The decision for one verdict. */
export interface SpfDecision {
  /** What to do. */
  action: SpfAction;
  /** The reply to send when rejecting or deferring; undefined when accepting. */
  reply?: SmtpReply;
  /** A short token for the mail log: `spf_<result>`, or `spf_local_domain`. */
  reason: string;
}

/**
 * Decides what to do with a verdict. `isLocalDomain` says whether a domain
 * is one of ours (the caller owns that list).
 */
export function decideSpf(
  verdict: SpfVerdict,
  policy: SpfPolicy = DEFAULT_SPF_POLICY,
  isLocalDomain: (domain: string) => boolean = () => false,
): SpfDecision {
  const result = verdict.result;
  if (policy.localDomainReject.includes(result) && isLocalDomain(verdict.domain)) {
    return {
      action: "reject",
      reason: "spf_local_domain",
      reply: {
        code: 550,
        enhanced: "5.7.23",
        text: replySafe(
          `SPF check failed: ${verdict.domain} is a local domain, and this host may not send ` +
            `its mail (${result}); use authenticated submission`,
          400,
        ),
      },
    };
  }
  const action = policy.actions[result];
  const reason = `spf_${result}`;
  if (action === "accept") return { action, reason };
  return {
    action,
    reason,
    reply: action === "reject" ? rejectReply(verdict) : deferReply(verdict),
  };
}

function rejectReply(verdict: SpfVerdict): SmtpReply {
  if (verdict.result === "permerror" || verdict.result === "temperror") {
    // RFC 7372 section 3.2: X.7.24 is the code for SPF evaluation errors.
    return {
      code: 550,
      enhanced: "5.7.24",
      text: replySafe(`SPF ${verdict.result}: ${reason(verdict)}`, 400),
    };
  }
  // RFC 7208 section 6.2: the domain's explanation is third-party text, so say whose it is.
  const explained = verdict.explanation
    ? `; ${verdict.domain} explains: ${replySafe(verdict.explanation)}`
    : "";
  const label = verdict.result === "fail" ? "failed" : `result ${verdict.result}`;
  return {
    code: 550,
    enhanced: "5.7.23",
    text: replySafe(`SPF check ${label}: ${reason(verdict)}${explained}`, 400),
  };
}

function deferReply(verdict: SpfVerdict): SmtpReply {
  if (verdict.result === "temperror") {
    return {
      code: 451,
      enhanced: "4.4.3",
      text: replySafe(`Temporary SPF error, try again later: ${reason(verdict)}`, 400),
    };
  }
  return {
    code: 451,
    enhanced: "4.7.24",
    text: replySafe(`SPF ${verdict.result}, try again later: ${reason(verdict)}`, 400),
  };
}

/** mailauth's comment without the leading "<our host name>: ". */
function reason(verdict: SpfVerdict): string {
  const colon = verdict.comment.indexOf(": ");
  return colon > 0 && !verdict.comment.slice(0, colon).includes(" ")
    ? verdict.comment.slice(colon + 2)
    : verdict.comment;
}
