/**
 * Static daemon configuration: the `postern.yaml` schema, the embedded
 * defaults, and loading a configuration directory with clear errors.
 *
 * @module
 */

export { CONFIG_FILE_NAME, DEFAULTS } from "./defaults.ts";
export {
  DESCRIPTOR_COSTS,
  descriptorNeeds,
  descriptorWarning,
  fitSmtpConnections,
  MIN_SMTP_CONNECTIONS,
  SessionCap,
} from "./descriptor_budget.ts";
export type { DescriptorFit, DescriptorNeeds, SessionCapOptions } from "./descriptor_budget.ts";
export { ConfigError, describe, errorCode } from "./config_error.ts";
export { loadConfig } from "./load.ts";
export type { LoadOptions } from "./load.ts";
export { listenAddressProblem } from "./fields.ts";
export { ConfigFileSchema } from "./schema.ts";
export type { ConfigFile } from "./schema.ts";
export type { AcmeConfig, CertificatePair, Config, DomainConfig, MtaStsConfig } from "./types.ts";
export { parseDuration, parseSize } from "./units.ts";
