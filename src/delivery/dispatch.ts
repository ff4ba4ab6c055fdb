/**
 * Sends each recipient of a message to the courier for its domain: the
 * local courier for our domains, the remote courier for the rest. Remote
 * recipients of one message are handed over together, so that those of
 * one domain share a transaction.
 *
 * @module
 */

import { splitAddress } from "../aliases/mod.ts";
import { privateDetail } from "../outbound/bounce.ts";
import type { Courier, DeliveryResult, RecipientRef, SpoolItem } from "../queue/mod.ts";
import type { LocalCourier } from "./local.ts";

/** Delivers remote recipients; undefined while outbound delivery is not available. */
export type RemoteDelivery = (
  item: SpoolItem,
  recipients: RecipientRef[],
  open: () => AsyncIterable<Uint8Array>,
) => Promise<DeliveryResult[]>;

/** Splits recipients between local and remote delivery. */
export class DispatchCourier implements Courier {
  #local: LocalCourier;
  #remote: RemoteDelivery;
  #isLocalDomain: (domain: string) => boolean;

  /** `isLocalDomain` answers with the policy in force. */
  constructor(
    local: LocalCourier,
    remote: RemoteDelivery,
    isLocalDomain: (domain: string) => boolean,
  ) {
    this.#local = local;
    this.#remote = remote;
    this.#isLocalDomain = isLocalDomain;
  }

  /**
   * The domains of the remote recipients, once each (normalized), for the
   * queue's limit per destination, and those of the remote targets local
   * recipients' aliases forward to: a forward waits for a connection like
   * any remote delivery, and holds its queue slot meanwhile (README, Fair
   * queue: a slow destination must not hold up mail for the others).
   *
   * These are recipient domains: a route to a smarthost or a hook's
   * deliver_as_if_to_domain is not known until the attempt, and the
   * connection pool enforces its own limits for those. An alias's targets
   * are those of the aliases files; the alias-resolve hook is not asked
   * here (a round trip for each queue decision, and a hook may count its
   * calls), so a remote target only it adds is not counted. A target that
   * an earlier attempt already delivered still counts, until the message
   * is done.
   */
  destinationsOf(recipients: readonly string[]): string[] {
    const domains = new Set<string>();
    for (const address of recipients) {
      const domain = this.#remoteDomain(address);
      if (domain !== undefined) {
        domains.add(domain);
        continue;
      }
      for (const forwarded of this.#local.remoteDomainsOf(address)) domains.add(forwarded);
    }
    return [...domains];
  }

  /** The domain of an address that is delivered remotely; undefined for one of ours. */
  #remoteDomain(address: string): string | undefined {
    const { domain } = splitAddress(address);
    // An address without a domain is one of ours (RFC 5321 section 4.5.1 postmaster).
    return domain === "" || this.#isLocalDomain(domain) ? undefined : domain;
  }

  /** Delivers to every recipient; one result each, in order. */
  async deliver(
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]> {
    const results: DeliveryResult[] = new Array(recipients.length);
    const remote: Array<{ position: number; recipient: RecipientRef }> = [];
    const local: Array<{ position: number; recipient: RecipientRef }> = [];
    for (const [position, recipient] of recipients.entries()) {
      if (this.#remoteDomain(recipient.address) === undefined) {
        local.push({ position, recipient });
      } else {
        remote.push({ position, recipient });
      }
    }
    // The Courier contract: never reject. A failure of remote delivery
    // defers its recipients; those delivered locally keep their results.
    const remoteDone = remote.length === 0
      ? Promise.resolve()
      : this.#remote(item, remote.map((r) => r.recipient), open).then(
        (rs) => {
          for (const [i, r] of remote.entries()) {
            results[r.position] = rs[i] ?? { status: "deferred", error: "no delivery result" };
          }
        },
        (err: unknown) => {
          const error = `remote delivery failed${
            privateDetail(err instanceof Error ? err.message : String(err))
          }`;
          for (const r of remote) results[r.position] = { status: "deferred", error };
        },
      );
    // Local recipients one after the other, as before outbound existed
    // (pipes of one message do not race); remote ones meanwhile.
    try {
      const rs = await this.#local.deliverAll(item, local.map((l) => l.recipient), open);
      for (const [i, { position }] of local.entries()) results[position] = rs[i]!;
    } catch (err) {
      const error = `local delivery failed${
        privateDetail(err instanceof Error ? err.message : String(err))
      }`;
      for (const { position } of local) results[position] ??= { status: "deferred", error };
    }
    await remoteDone;
    return results;
  }
}
