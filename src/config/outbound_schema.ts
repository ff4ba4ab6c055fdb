/**
 * The `outbound` section of `postern.yaml`: delivery to other domains' MX
 * hosts or a smarthost, its connections and time limits, DKIM signing,
 * virtual MTAs and the routes that pick them. `defaults.ts` holds the
 * value a missing field takes.
 *
 * @module
 */

import * as v from "valibot";
import { Count, Duration, ListenAddress, QUEUE_SPAN, Text, TIMER } from "./fields.ts";

/** Schema of the `outbound` section. */
export const OutboundSchema = v.strictObject({
  /** TCP port of MX hosts. Default: 25 (RFC 5321 section 4.5.4). Change only for tests. */
  port: v.optional(v.pipe(Count(1), v.maxValue(65535, "must be at most 65535"))),
  /** Outbound connections open at once, in total. Default: 100. */
  max_connections: v.optional(Count(1)),
  /** Connections at once to one destination domain (per virtual MTA). Default: 10. */
  max_connections_per_destination: v.optional(Count(1)),
  /** Messages sent over one connection before it is closed. Default: 100. */
  messages_per_connection: v.optional(Count(1)),
  /** How long an idle connection is kept for the next message to the same destination. Default: 5s. */
  connection_idle: v.optional(Duration(TIMER)),
  /** Time allowed to connect and receive the greeting. Default: 30s. */
  connect_timeout: v.optional(Duration(TIMER)),
  /** Inactivity allowed while a command or the message is sent. Default: 5m. */
  command_timeout: v.optional(Duration(TIMER)),
  /** Apply MTA-STS policies (RFC 8461) of destination domains. Default: true. */
  mta_sts: v.optional(v.boolean("must be true or false")),
  /** Sign mail of our domains with their DKIM keys (domains/<d>/dkim/). Default: true. */
  dkim_sign: v.optional(v.boolean("must be true or false")),
  /** How often DKIM records are looked up again (also on every reload); 0: only then. Default: 1h. */
  dkim_check_interval: v.optional(Duration(TIMER)),
  /** Send the sender a warning when a message is still queued after this long; 0 never. Default: 0. */
  delay_warning: v.optional(Duration(QUEUE_SPAN)),
  /** Header whose value is the message's SendID; removed before the message leaves. Default: X-SendID. */
  sendid_header: v.optional(Text("a header name")),
  /** Header whose value is the message's ListID; removed before the message leaves. Default: X-ListID. */
  listid_header: v.optional(Text("a header name")),
  /** Deliver everything through this relay instead of MX hosts. */
  smarthost: v.optional(v.strictObject({
    /** host:port of the relay. */
    address: ListenAddress,
    /** "starttls" (port 587) or "implicit" (port 465). Default: starttls. */
    tls: v.optional(v.picklist(["starttls", "implicit"], "must be starttls or implicit")),
    /** User name for AUTH; with it, password_file is required. */
    username: v.optional(Text("a user name")),
    /** File holding the password (first line), relative to the config directory. */
    password_file: v.optional(Text("a file path")),
    /** PEM CA certificates to verify the relay with, besides the system's. */
    ca_file: v.optional(Text("a file path")),
  })),
  /** Named outbound profiles; "default" is used when no route picks another. */
  virtual_mtas: v.optional(v.record(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.\-]+$/, "must be a name of letters, digits, _ . -")),
    v.nullish(v.strictObject({
      /** Source address to bind outbound connections to. Default: the system's choice. */
      bind: v.optional(v.pipe(
        v.string("must be an IP address"),
        v.regex(/^[0-9.]+$|^[0-9a-fA-F:]+$/, "must be an IP address"),
      )),
      /** Name sent in EHLO. Default: hostname. */
      ehlo: v.optional(Text("a host name")),
      /** Overrides max_connections_per_destination for this profile. */
      max_connections_per_destination: v.optional(Count(1)),
    })),
  )),
  /** Rules picking a virtual MTA; the first that matches wins. */
  routes: v.optional(v.array(v.strictObject({
    /** Matches the envelope sender's domain. */
    sender_domain: v.optional(Text("a domain")),
    /** Matches the recipient's domain. */
    recipient_domain: v.optional(Text("a domain")),
    /** The virtual MTA to use. */
    mta: Text("a virtual MTA name"),
  }))),
});
