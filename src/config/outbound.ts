/**
 * Resolves the `outbound` section of `postern.yaml`: defaults, the
 * smarthost's password and CA files, virtual MTAs and routes.
 *
 * @module
 */

import { normalizeDomain } from "../aliases/mod.ts";
import { splitHostPort } from "../smtp/mod.ts";
import type { OutboundConfig, Smarthost, VirtualMta } from "../outbound/settings.ts";
import { DEFAULTS } from "./defaults.ts";
import type { ConfigFile } from "./schema.ts";

/** Reads an optional file as text; undefined when it does not exist. */
type ReadText = (path: string) => string | undefined;

/**
 * The resolved outbound settings.
 *
 * @throws {Error} with a message naming the field, when a file it names is
 * missing or a route names an unknown virtual MTA.
 */
export function resolveOutbound(
  section: ConfigFile["outbound"],
  context: {
    hostname: string;
    mainFile: string;
    relativeToConfig: (path: string) => string;
    readText: ReadText;
  },
): OutboundConfig {
  const d = DEFAULTS.outbound;
  const s = section ?? {};
  const perDestination = s.max_connections_per_destination ?? d.maxConnectionsPerDestination;
  const virtualMtas = new Map<string, VirtualMta>();
  type Profile = NonNullable<NonNullable<typeof s.virtual_mtas>[string]>;
  const profiles: Record<string, Profile | null | undefined> = { default: null, ...s.virtual_mtas };
  for (const [name, profile] of Object.entries(profiles)) {
    virtualMtas.set(name, {
      name,
      bind: profile?.bind,
      ehlo: profile?.ehlo ?? context.hostname,
      maxConnectionsPerDestination: profile?.max_connections_per_destination ?? perDestination,
    });
  }
  const routes = (s.routes ?? []).map((route, index) => {
    if (!virtualMtas.has(route.mta)) {
      throw new Error(
        `${context.mainFile}: outbound.routes.${index}.mta names "${route.mta}", which is not ` +
          `in outbound.virtual_mtas`,
      );
    }
    if (route.sender_domain === undefined && route.recipient_domain === undefined) {
      throw new Error(
        `${context.mainFile}: outbound.routes.${index} needs sender_domain or recipient_domain`,
      );
    }
    return {
      senderDomain: route.sender_domain === undefined
        ? undefined
        : normalizeDomain(route.sender_domain),
      recipientDomain: route.recipient_domain === undefined
        ? undefined
        : normalizeDomain(route.recipient_domain),
      mta: route.mta,
    };
  });
  return {
    port: s.port ?? d.port,
    maxConnections: s.max_connections ?? d.maxConnections,
    maxConnectionsPerDestination: perDestination,
    messagesPerConnection: s.messages_per_connection ?? d.messagesPerConnection,
    connectionIdleMs: s.connection_idle ?? d.connectionIdleMs,
    connectTimeoutMs: s.connect_timeout ?? d.connectTimeoutMs,
    commandTimeoutMs: s.command_timeout ?? d.commandTimeoutMs,
    mtaSts: s.mta_sts ?? d.mtaSts,
    dkimSign: s.dkim_sign ?? d.dkimSign,
    dkimCheckIntervalMs: s.dkim_check_interval ?? d.dkimCheckIntervalMs,
    delayWarningMs: s.delay_warning ?? d.delayWarningMs,
    sendidHeader: s.sendid_header ?? d.sendidHeader,
    listidHeader: s.listid_header ?? d.listidHeader,
    smarthost: s.smarthost === undefined ? undefined : resolveSmarthost(s.smarthost, context),
    virtualMtas,
    routes,
  };
}

function resolveSmarthost(
  relay: NonNullable<NonNullable<ConfigFile["outbound"]>["smarthost"]>,
  context: { mainFile: string; relativeToConfig: (path: string) => string; readText: ReadText },
): Smarthost {
  // The schema checked the shape (host:port, [v6]:port).
  const { host, port } = splitHostPort(relay.address);
  const field = (name: string) => `${context.mainFile}: outbound.smarthost.${name}`;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${field("address")}: port ${port} is not between 1 and 65535`);
  }
  if ((relay.username === undefined) !== (relay.password_file === undefined)) {
    throw new Error(`${field("username")} and password_file go together: give both or neither`);
  }
  let auth: Smarthost["auth"];
  if (relay.username !== undefined && relay.password_file !== undefined) {
    const path = context.relativeToConfig(relay.password_file);
    const text = context.readText(path);
    const pass = text?.split(/\r?\n/)[0] ?? "";
    if (text === undefined || pass === "") {
      throw new Error(`${field("password_file")}: ${path} is missing or its first line is empty`);
    }
    auth = { user: relay.username, pass };
  }
  let ca: string | undefined;
  if (relay.ca_file !== undefined) {
    const path = context.relativeToConfig(relay.ca_file);
    ca = context.readText(path);
    if (ca === undefined) throw new Error(`${field("ca_file")}: ${path} does not exist`);
  }
  return { host, port, tls: relay.tls ?? "starttls", auth, ca };
}
