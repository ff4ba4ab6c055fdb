/**
 * Outbound delivery: MX routing, pooled SMTP connections with opportunistic
 * TLS and MTA-STS, virtual MTAs, the smarthost, the pre-delivery-attempt
 * hook, and bounces (delivery status notifications).
 *
 * @module
 */

export { Bouncer, type BouncerDeps } from "./bounce.ts";
export { SmtpError, SmtpSession, type TlsMode } from "./client.ts";
export { buildDsn, headerSection, statusOf } from "./dsn.ts";
export type { DsnInput, DsnRecipient } from "./dsn.ts";
export { MtaStsPolicies } from "./mta_sts.ts";
export type { KnownPolicy, MtaStsOptions, TlsRequirement } from "./mta_sts.ts";
export { type MailHost, mailHosts, RoutingError } from "./mx.ts";
export { ConnectionPool, type Lease } from "./pool.ts";
export { HOOK_ERROR_TEXT, type PreDeliveryDecision, preDeliveryDecision } from "./pre_delivery.ts";
export { RemoteCourier, type RemoteCourierDeps } from "./remote.ts";
export { chooseMta, domainOf } from "./route.ts";
export type { OutboundConfig, Route, Smarthost, VirtualMta } from "./settings.ts";
