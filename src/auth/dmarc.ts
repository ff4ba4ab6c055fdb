/**
 * DMARC for every author of a message (RFC 7489 section 6.6.1). mailauth
 * evaluates a message with exactly one Author Domain and otherwise answers
 * with a reason only (`multiple-from-fields`, `multiple-author-domains`,
 * `invalid-author-domain`); taken as it is, that reason lets a second
 * author bypass `p=reject`. Here each Author Domain is evaluated on its own,
 * so the caller can apply the strictest failing policy.
 *
 * @module
 */

import type { ARCResult, DMARCResult } from "./mailauth.ts";
import { evaluateDmarc, type mailauthResolver } from "./mailauth.ts";

/** At most this many Author Domains are evaluated; a message with more is refused. */
export const MAX_AUTHOR_DOMAINS = 10;

/** The DMARC verdict for one Author Domain. */
export interface DmarcVerdict {
  /** pass, fail, none, temperror or permerror. */
  result: string;
  /** The effective policy for this message: none, quarantine or reject ("" when unknown). */
  policy: string;
  /** The Author Domain (the From domain). */
  headerFrom: string;
  /** The domain whose record applied. */
  policyDomain?: string;
  /** The `dmarc=…` row of Authentication-Results. */
  info?: string;
}

/** What `evaluateAuthors()` found. */
export interface AuthorsEvaluation {
  /** One verdict per Author Domain evaluated; empty when there was none to evaluate. */
  verdicts: DmarcVerdict[];
  /** Why mailauth could not evaluate the message as one, when it could not. */
  reason?: string;
  /** Number of From header fields. */
  fromFields: number;
  /** Author Domains beyond {@linkcode MAX_AUTHOR_DOMAINS}, not evaluated. */
  unchecked: number;
  /** Signing domains (as mailauth keys them) that aligned with some Author Domain. */
  dkimAligned: Set<string>;
}

/** mailauth's input, without the author fields. */
export interface AuthorsInput {
  /** The addresses of the From fields, as mailauth's DKIM verifier collected them. */
  headerFrom: string[];
  /** Number of From fields. */
  fromFields: number;
  spfDomains: string[];
  dkimDomains: Array<{
    id?: string | undefined;
    domain?: string | undefined;
    aligned?: string | false | undefined;
    underSized?: number | undefined;
  }>;
  arcResult?: ARCResult | undefined;
  resolver: ReturnType<typeof mailauthResolver>;
}

/** Reasons for which each Author Domain is evaluated on its own. */
const PER_DOMAIN = new Set([
  "multiple-from-fields",
  "multiple-author-domains",
  "invalid-author-domain",
]);

/**
 * Evaluates DMARC for the message and, when mailauth cannot do it as a
 * whole because there are several Author Domains or several From fields,
 * for each Author Domain (the first {@linkcode MAX_AUTHOR_DOMAINS}).
 */
export async function evaluateAuthors(input: AuthorsInput): Promise<AuthorsEvaluation> {
  const run = async (headerFrom: string[], fromFields: number) =>
    await evaluateDmarc(
      { ...input, headerFrom, fromFields } as Parameters<typeof evaluateDmarc>[0],
    );
  const whole = await run(input.headerFrom, input.fromFields);
  const evaluation: AuthorsEvaluation = {
    verdicts: [],
    fromFields: input.fromFields,
    unchecked: 0,
    dkimAligned: new Set(whole.dkimAligned ?? []),
  };
  if (whole.response) {
    evaluation.verdicts.push(verdictOf(whole.response));
    return evaluation;
  }
  if (whole.reason) evaluation.reason = whole.reason;
  if (!whole.reason || !PER_DOMAIN.has(whole.reason)) return evaluation;
  const domains: string[] = whole.authorDomains ?? [];
  evaluation.unchecked = Math.max(0, domains.length - MAX_AUTHOR_DOMAINS);
  // RFC 7489 section 6.6.1: each domain of the From field is an Author
  // Domain; the strictest policy among the checks that fail applies.
  const results = await Promise.all(
    domains.slice(0, MAX_AUTHOR_DOMAINS).map((domain) => run([domain], 1)),
  );
  for (const result of results) {
    if (!result.response) continue;
    evaluation.verdicts.push(verdictOf(result.response));
    for (const aligned of result.dkimAligned ?? []) evaluation.dkimAligned.add(aligned);
  }
  return evaluation;
}

function verdictOf(response: DMARCResult): DmarcVerdict {
  const verdict: DmarcVerdict = {
    result: response.status.result,
    policy: response.policy ?? "",
    headerFrom: response.status.header?.from ?? "",
  };
  if (response.policyDomain) verdict.policyDomain = response.policyDomain;
  if (typeof response.info === "string") verdict.info = response.info;
  return verdict;
}
