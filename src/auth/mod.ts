/**
 * Message authentication through mailauth: SPF at MAIL FROM and the policy
 * that acts on it, DKIM/ARC/DMARC after DATA with one
 * Authentication-Results field, and DKIM keys and signing for our own
 * domains. DNS goes through `src/dns/`.
 *
 * @example SPF at MAIL FROM
 * ```ts ignore
 * import { DnsResolver } from "../dns/mod.ts";
 * import { checkSpf, decideSpf, spfPolicy } from "./mod.ts";
 *
 * const resolver = new DnsResolver();
 * const verdict = await checkSpf({
 *   sender: "alice@example.org",
 *   ip: "192.0.2.1",
 *   helo: "mail.example.org",
 *   hostname: "mx.example.net",
 *   resolver: resolver.resolve,
 * });
 * const decision = decideSpf(verdict, spfPolicy(), (d) => d === "example.net");
 * ```
 *
 * @module
 */

export {
  authenticateMessage,
  type AuthenticateOptions,
  type AuthSummary,
  type DkimSignatureVerdict,
  type DmarcVerdict,
} from "./authenticate.ts";
export { decideDmarc, type DmarcDecision } from "./dmarc_policy.ts";
export { MAX_AUTHOR_DOMAINS } from "./dmarc.ts";
export {
  defaultDkimSelector,
  type DkimAlgorithm,
  type DkimDnsRecord,
  dkimDnsRecord,
  dkimKeyDir,
  dkimSign,
  type DkimSignOptions,
  type GeneratedDkimKey,
  generateDkimKey,
  type GenerateDkimKeyOptions,
} from "./dkim_keys.ts";
export {
  chooseSigningKey,
  type DkimKey,
  DkimKeyError,
  loadDkimKeys,
  lookUpRecord,
  type RecordState,
} from "./dkim_records.ts";
export { DkimKeyring, type DomainKeys, formatKeyStatus, type KeyStatus } from "./dkim_keyring.ts";
export { getMtaStsPolicy, loadMailauth, type Mailauth, mailauthResolver } from "./mailauth.ts";
export { inNetworks, type Network, parseNetwork } from "./networks.ts";
export { checkSpf, type SpfCheckOptions, type SpfResult, type SpfVerdict } from "./spf.ts";
export { SpfVerdictCache, type SpfVerdictCacheOptions } from "./spf_cache.ts";
export {
  decideSpf,
  DEFAULT_SPF_POLICY,
  type SpfAction,
  type SpfDecision,
  type SpfPolicy,
  spfPolicy,
  type SpfPolicyOverrides,
} from "./spf_policy.ts";
