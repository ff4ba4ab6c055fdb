/**
 * The local courier: expands aliases for an envelope recipient and delivers
 * to each destination: Maildirs (or LMTP), pipe commands, and remote
 * targets, handed to outbound delivery together. A message that already
 * went through a recipient is a loop (`delivered_to.ts`).
 *
 * @module
 */

import { join } from "node:path";
import {
  AliasDepthError,
  AliasExpansionLimitError,
  AliasLookupLimitError,
  type Destination,
  type ExtraTargets,
  type RecipientResolver,
} from "../aliases/mod.ts";
import { privateDetail } from "../outbound/bounce.ts";
import type { DeliveryResult, RecipientRef, SpoolItem } from "../queue/mod.ts";
import type { Endpoint } from "../users/endpoint.ts";
import type { LmtpCourier, LmtpResults } from "./lmtp.ts";
import { deliveredToOf, forwardingLoop, loopOf } from "./delivered_to.ts";
import { crlfToLf, prepend } from "./line_endings.ts";
import { isPermanentFsError, mailboxDirName, Maildir } from "./maildir.ts";
import { deliverToPipe } from "./pipe.ts";
import { destinationKey, earlierOutcomes, TargetOutcomes } from "./target_records.ts";

/** Settings of the local courier. */
export interface LocalCourierOptions {
  /** Root of the mailboxes: `<mailRoot>/<domain>/<user>/` is a Maildir. */
  mailRoot: string;
  /** Host name used in Maildir file names. */
  hostname: string;
  /** Time a pipe command may run. */
  pipeTimeoutMs: number;
  /** Working directory of pipe commands. */
  pipeCwd: string;
  /** Extra alias targets (the alias-resolve hook), when there is a source. */
  extraTargets?: ExtraTargets | undefined;
  /**
   * Delivers an alias's remote targets, one result each in order; without
   * it such targets wait. The targets of one envelope recipient come in one
   * call (those of one domain can then share a transaction).
   */
  forward?:
    | ((
      item: SpoolItem,
      recipients: RecipientRef[],
      open: () => AsyncIterable<Uint8Array>,
    ) => Promise<DeliveryResult[]>)
    | undefined;
  /**
   * LMTP delivery (RFC 2033) for the mailboxes of the domains that have an
   * LMTP server (`endpointOf`, asked at each delivery); without it, or for
   * other domains, mailboxes are Maildirs under `mailRoot`.
   */
  lmtp?: {
    courier: LmtpCourier;
    endpointOf: (domain: string) => Endpoint | undefined;
  } | undefined;
}

/**
 * Destinations resolved ahead, with the LMTP results of the whole message
 * and the addresses of its Delivered-To fields.
 */
interface Prepared {
  destinations: Destination[] | DeliveryResult;
  lmtp: Map<string, LmtpResults>;
  deliveredTo: ReadonlySet<string>;
}

/** Delivers to local destinations. */
export class LocalCourier {
  #resolver: () => RecipientResolver;
  #options: LocalCourierOptions;
  #maildirs = new Map<string, Maildir>();
  #uniqueHost: string;

  /**
   * Creates the courier. `resolver` returns the current recipient resolver,
   * so a delivery uses the aliases in force when it runs.
   */
  constructor(resolver: () => RecipientResolver, options: LocalCourierOptions) {
    this.#resolver = resolver;
    this.#options = options;
    // Maildir names may not contain "/" or ":" (the flags separator).
    this.#uniqueHost = options.hostname.replace(/\//g, "\\057").replace(/:/g, "\\072");
  }

  /**
   * The remote domains an alias of the aliases files forwards `address` to
   * (see `RecipientResolver.remoteDomainsOf`); none for a mailbox or pipe.
   */
  remoteDomainsOf(address: string): readonly string[] {
    return this.#resolver().remoteDomainsOf(address);
  }

  /** Changes the pipe time limit (a policy reload); the next pipe uses it. */
  setPipeTimeout(ms: number): void {
    this.#options = { ...this.#options, pipeTimeoutMs: ms };
  }

  /**
   * Delivers to every local recipient of a message, one after the other,
   * as {@linkcode deliver} does; the mailboxes that go over LMTP get one
   * transaction per LMTP server for the whole message first (RFC 2033).
   * The message's header is read once for all of them (its Delivered-To
   * fields, see `delivered_to.ts`).
   */
  async deliverAll(
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]> {
    if (recipients.length === 0) return [];
    const seen = await deliveredToOf(item, open);
    const resolved: Array<Destination[] | DeliveryResult> = [];
    for (const recipient of recipients) {
      resolved.push(await this.#destinations(recipient.address, seen));
    }
    const transactions = await this.#lmtpTransactions(item, recipients, resolved, seen, open);
    return await this.#eachOf(
      item,
      recipients,
      open,
      (i) => ({ destinations: resolved[i]!, lmtp: transactions, deliveredTo: seen }),
    );
  }

  /** One LMTP transaction per server, for the mailboxes of every recipient that it serves. */
  async #lmtpTransactions(
    item: SpoolItem,
    recipients: RecipientRef[],
    resolved: Array<Destination[] | DeliveryResult>,
    seen: ReadonlySet<string>,
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<Map<string, LmtpResults>> {
    const transactions = new Map<string, LmtpResults>();
    const lmtp = this.#options.lmtp;
    if (!lmtp) return transactions;
    const byServer = new Map<string, { endpoint: Endpoint; to: Set<string> }>();
    for (const [i, recipient] of recipients.entries()) {
      const destinations = resolved[i]!;
      if (!Array.isArray(destinations)) continue;
      const earlier = earlierOutcomes(recipient.done);
      for (const d of destinations) {
        if (d.kind !== "mailbox" || earlier.settled(destinationKey(d))) continue;
        if (loopOf(d, seen) !== undefined) continue;
        const endpoint = lmtp.endpointOf(d.domain);
        if (!endpoint) continue;
        const key = JSON.stringify(endpoint);
        const server = byServer.get(key) ?? { endpoint, to: new Set<string>() };
        server.to.add(`${d.user}@${d.domain}`);
        byServer.set(key, server);
      }
    }
    for (const [key, { endpoint, to }] of byServer) {
      transactions.set(
        key,
        await lmtp.courier.deliver(endpoint, { from: item.envelope.from, to: [...to] }, open),
      );
    }
    return transactions;
  }

  /** {@linkcode deliver} for each recipient in turn; a throw defers only its own. */
  async #eachOf(
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
    prepared?: (i: number) => Prepared,
  ): Promise<DeliveryResult[]> {
    const results: DeliveryResult[] = [];
    for (const [i, recipient] of recipients.entries()) {
      try {
        results.push(await this.deliver(item, recipient, open, prepared?.(i)));
      } catch (err) {
        const error = `local delivery failed${
          privateDetail(err instanceof Error ? err.message : String(err))
        }`;
        results.push({ status: "deferred", error });
      }
    }
    return results;
  }

  /**
   * Delivers to every destination of one envelope recipient but those
   * `recipient.done` names as final (delivered, or failed for good, by an
   * earlier attempt).
   */
  async deliver(
    item: SpoolItem,
    recipient: {
      address: string;
      index: number;
      attempts?: number;
      done?: readonly string[] | undefined;
    },
    open: () => AsyncIterable<Uint8Array>,
    prepared?: Prepared,
  ): Promise<DeliveryResult> {
    const seen = prepared?.deliveredTo ?? await deliveredToOf(item, open);
    const destinations = prepared?.destinations ??
      await this.#destinations(recipient.address, seen);
    if (!Array.isArray(destinations)) return destinations;
    const outcomes = new TargetOutcomes(recipient.done);
    const forwards: Array<{ key: string; address: string }> = [];
    for (const destination of destinations) {
      const key = destinationKey(destination);
      if (outcomes.settled(key)) continue;
      if (destination.kind === "remote") {
        forwards.push({ key, address: destination.address });
        continue;
      }
      outcomes.record(
        key,
        loopOf(destination, seen) ??
          await this.#deliverOne(item, recipient, destination, open, prepared?.lmtp),
      );
    }
    if (forwards.length > 0) {
      const results = await this.#forward(item, recipient, forwards.map((f) => f.address), open);
      for (const [i, { key }] of forwards.entries()) outcomes.record(key, results[i]!);
    }
    return outcomes.result();
  }

  /**
   * Forwards to an alias's remote targets with the original envelope
   * sender, as chasquid does: in one call, so that the targets of one
   * domain share a transaction (README, Outbound).
   */
  async #forward(
    item: SpoolItem,
    recipient: { address: string; index: number; attempts?: number },
    addresses: string[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]> {
    const forward = this.#options.forward;
    if (!forward) {
      return addresses.map((address) => ({
        status: "deferred",
        error: `forwarding to ${address} needs outbound delivery, which is not enabled`,
      }));
    }
    // The copy says where it was delivered, so that it is known as a loop
    // if it comes back (see `delivered_to.ts`).
    const head = new TextEncoder().encode(`Delivered-To: ${recipient.address}\r\n`);
    const results = await forward(
      item,
      addresses.map((address) => ({
        address,
        index: recipient.index,
        attempts: recipient.attempts ?? 0,
      })),
      () => prepend(head, open()),
    );
    return addresses.map((_, i) =>
      results[i] ?? { status: "deferred", error: "outbound delivery gave no result" }
    );
  }

  /**
   * The destinations of an envelope recipient, or the result that ends its
   * delivery: a loop when the message already went through it (its header
   * has a Delivered-To with its address, which this courier adds to what it
   * delivers and forwards), else the failure of its alias expansion.
   */
  async #destinations(
    address: string,
    seen: ReadonlySet<string>,
  ): Promise<Destination[] | DeliveryResult> {
    if (seen.has(address.toLowerCase())) return forwardingLoop(address);
    return await this.#resolve(address);
  }

  /** The destinations of an address, or the result that ends its delivery. */
  async #resolve(address: string): Promise<Destination[] | DeliveryResult> {
    try {
      return await this.#resolver().resolve(address, this.#options.extraTargets);
    } catch (err) {
      // A limit the same aliases would pass no better on a retry: fail now
      // (RFC 3463 section 3.3: X.2.4, mailing list expansion problem).
      if (
        err instanceof AliasDepthError || err instanceof AliasLookupLimitError ||
        err instanceof AliasExpansionLimitError
      ) {
        return { status: "failed", error: err.message, dsnStatus: "5.2.4" };
      }
      // What the hook said is for the log: its text is not the sender's business.
      return { status: "deferred", error: `alias expansion failed${privateDetail(String(err))}` };
    }
  }

  async #deliverOne(
    item: SpoolItem,
    recipient: { address: string; index: number; attempts?: number },
    destination: Exclude<Destination, { kind: "remote" }>,
    open: () => AsyncIterable<Uint8Array>,
    transactions?: Map<string, LmtpResults>,
  ): Promise<DeliveryResult> {
    const { envelope } = item;
    switch (destination.kind) {
      case "mailbox": {
        const address = `${destination.user}@${destination.domain}`;
        const endpoint = this.#options.lmtp?.endpointOf(destination.domain);
        if (endpoint && this.#options.lmtp) {
          // Delivered in the message's transaction, or on its own when
          // called without one.
          return transactions?.get(JSON.stringify(endpoint))?.get(address) ??
            (await this.#options.lmtp.courier.deliver(endpoint, {
              from: envelope.from,
              to: [address],
            }, open)).get(address)!;
        }
        const maildir = this.#maildir(destination.domain, destination.user);
        const seconds = Math.floor(Date.parse(envelope.received_at) / 1000);
        const name = `${seconds}.Q${envelope.id}R${recipient.index}.${this.#uniqueHost}`;
        const head = traceHeaders(envelope.from, address);
        try {
          const stored = await maildir.deliver(
            name,
            prepend(head, crlfToLf(open())),
            item.recovered || item.state.recipients[recipient.index]!.attempts > 0,
          );
          return {
            status: "sent",
            detail: stored ? `maildir:${address}` : `maildir:${address}(already)`,
          };
        } catch (err) {
          // The path names the data directory: in the log, not in the bounce.
          const error = `local delivery failed: mailbox unavailable${
            privateDetail(`maildir ${maildir.path}: ${String(err)}`)
          }`;
          // A name the file system will never take fails now, not after
          // the queue lifetime (RFC 3463 section 3.3: 5.2.0, other mailbox status).
          return isPermanentFsError(err)
            ? { status: "failed", error, dsnStatus: "5.2.0" }
            : { status: "deferred", error };
        }
      }
      case "pipe":
        return await deliverToPipe(
          destination.argv,
          {
            PATH: "/usr/local/bin:/usr/bin:/bin",
            SENDER: envelope.from,
            RECIPIENT: recipient.address,
            ALIAS: destination.alias,
            QUEUE_ID: envelope.id,
          },
          prepend(traceHeaders(envelope.from, recipient.address), crlfToLf(open())),
          this.#options.pipeTimeoutMs,
          this.#options.pipeCwd,
        );
    }
  }

  #maildir(domain: string, user: string): Maildir {
    const path = join(this.#options.mailRoot, mailboxDirName(domain), mailboxDirName(user));
    let maildir = this.#maildirs.get(path);
    if (!maildir) {
      maildir = new Maildir(path);
      this.#maildirs.set(path, maildir);
    }
    return maildir;
  }
}

/**
 * Return-Path (RFC 5321 section 4.4) and Delivered-To, which local delivery
 * adds at the top of the message, with LF line endings.
 */
function traceHeaders(from: string, to: string): Uint8Array {
  return new TextEncoder().encode(`Return-Path: <${from}>\nDelivered-To: ${to}\n`);
}
