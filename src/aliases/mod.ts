/**
 * Local recipients: chasquid-compatible aliases files, address
 * normalization, and recursive alias expansion.
 *
 * @module
 */

export { AliasSyntaxError, parseAliases, parseTargets } from "./parse.ts";
export type { AliasTable, AliasTarget } from "./parse.ts";
export { lookupKey, normalizeDomain, splitAddress } from "./normalize.ts";
export type { LookupOptions } from "./normalize.ts";
export {
  AliasDepthError,
  AliasExpansionLimitError,
  AliasLookupLimitError,
  MAX_ALIAS_DEPTH,
  MAX_ALIAS_LOOKUPS,
  MAX_EXTRA_LOOKUPS,
  RecipientResolver,
} from "./resolve.ts";
export type { Destination, ExtraTargets, LocalDomain } from "./resolve.ts";
