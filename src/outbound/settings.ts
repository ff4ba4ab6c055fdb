/**
 * The resolved `outbound` settings: how mail leaves for other domains.
 *
 * @module
 */

/** A named outbound profile (GreenArrow's VirtualMTA). */
export interface VirtualMta {
  name: string;
  /** Source address outbound connections bind to; undefined lets the system choose. */
  bind: string | undefined;
  /** Name sent in EHLO. */
  ehlo: string;
  /** Connections at once to one destination domain. */
  maxConnectionsPerDestination: number;
}

/** A rule choosing a virtual MTA by sender or recipient domain. */
export interface Route {
  senderDomain: string | undefined;
  recipientDomain: string | undefined;
  mta: string;
}

/** A relay that takes all outbound mail. */
export interface Smarthost {
  host: string;
  port: number;
  tls: "starttls" | "implicit";
  /** AUTH credentials, when the relay wants them. */
  auth: { user: string; pass: string } | undefined;
  /** Extra CA certificates (PEM) to verify the relay with. */
  ca: string | undefined;
}

/** The `outbound` section, resolved. */
export interface OutboundConfig {
  port: number;
  maxConnections: number;
  maxConnectionsPerDestination: number;
  messagesPerConnection: number;
  connectionIdleMs: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  mtaSts: boolean;
  dkimSign: boolean;
  /** How often DKIM records are looked up again; 0: only at load and reload. */
  dkimCheckIntervalMs: number;
  /** 0: no delay warnings. */
  delayWarningMs: number;
  sendidHeader: string;
  listidHeader: string;
  smarthost: Smarthost | undefined;
  /** Always holds "default". */
  virtualMtas: ReadonlyMap<string, VirtualMta>;
  routes: Route[];
}
