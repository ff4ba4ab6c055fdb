/**
 * The remote courier: delivers a message's recipients at other domains.
 * Each recipient is routed to a virtual MTA (and passed through the
 * pre-delivery-attempt hook); recipients that share a virtual MTA, domain
 * and sender go in one transaction, over a pooled connection to the
 * domain's MX hosts (or the smarthost). Opening a session is
 * `connect.ts`'s, the transaction over it `transaction.ts`'s.
 *
 * @module
 */

import type { PreDeliveryAttemptInput } from "../../hooks/mod.ts";
import type { DnsResolver } from "../dns/mod.ts";
import type { CallOutcome } from "../hooks/mod.ts";
import { type Counters, type Logger, printable } from "../log/mod.ts";
import type { DeliveryResult, RecipientRef, SpoolItem } from "../queue/mod.ts";
import type { SmtpSession, TlsMode } from "./client.ts";
import { openSession } from "./connect.ts";
import { statusOf } from "./dsn.ts";
import { type MessageContent, scanMessage } from "./eight_bit.ts";
import type { MtaStsPolicies, TlsRequirement } from "./mta_sts.ts";
import { type MailHost, mailHosts, relayHost, RoutingError } from "./mx.ts";
import type { ConnectionPool, Destination } from "./pool.ts";
import { HOOK_ERROR_TEXT, preDeliveryDecision } from "./pre_delivery.ts";
import { chooseMta, domainOf } from "./route.ts";
import type { OutboundConfig } from "./settings.ts";
import { type AttemptMessage, type RecipientGroup, sendTransaction } from "./transaction.ts";

/** What the remote courier needs; getters return what the policy in force says. */
export interface RemoteCourierDeps {
  config: () => OutboundConfig;
  resolver: () => DnsResolver;
  pool: ConnectionPool;
  mtaSts: MtaStsPolicies | undefined;
  /** Runs the pre-delivery-attempt hook; undefined when there is none. */
  preDeliveryHook: (input: PreDeliveryAttemptInput) => Promise<CallOutcome | undefined>;
  /** The hook's own log (errors of the hook, as GreenArrow logs them). */
  hookLog: (line: string) => void;
  logger: Logger;
  counters: Counters;
}

/** Delivers to other domains' MX hosts or to the smarthost. */
export class RemoteCourier {
  #deps: RemoteCourierDeps;
  #lastLoadErrorLog = 0;

  /** Creates the courier. */
  constructor(deps: RemoteCourierDeps) {
    this.#deps = deps;
  }

  /** Delivers `item` to `recipients` (all at remote domains); one result per recipient. */
  async deliver(
    item: SpoolItem,
    recipients: RecipientRef[],
    open: () => AsyncIterable<Uint8Array>,
  ): Promise<DeliveryResult[]> {
    const config = this.#deps.config();
    const results: DeliveryResult[] = new Array(recipients.length);
    const groups = new Map<string, RecipientGroup>();
    for (const [position, recipient] of recipients.entries()) {
      const planned = await this.#plan(item, recipient, config);
      if ("status" in planned) {
        results[position] = planned;
        continue;
      }
      const key =
        `${planned.mta.name}\n${planned.domain}\n${planned.limitDomain}\n${planned.sender}`;
      const group = groups.get(key) ?? { ...planned, members: [] };
      group.members.push({ position, address: recipient.address });
      groups.set(key, group);
    }
    let scanned: Promise<MessageContent> | undefined;
    const message: AttemptMessage = {
      open,
      content: () => scanned ??= scanMessage(open()),
      smtputf8: item.envelope.smtputf8,
    };
    await Promise.all([...groups.values()].map(async (group) => {
      const outcome = await this.#deliverGroup(group, config, message);
      for (const [i, member] of group.members.entries()) results[member.position] = outcome[i]!;
    }));
    return results;
  }

  /** Routes one recipient and asks the hook; a result when the hook ends the attempt. */
  async #plan(
    item: SpoolItem,
    recipient: RecipientRef,
    config: OutboundConfig,
  ): Promise<Omit<RecipientGroup, "members"> | DeliveryResult> {
    const { envelope } = item;
    const domain = domainOf(recipient.address);
    let mtaid = chooseMta(config, envelope.from, domain);
    let sender = envelope.from;
    let limitDomain = domain;
    const outcome = await this.#deps.preDeliveryHook({
      mtaid,
      sendid: envelope.sendid ?? "",
      listid: envelope.listid ?? "",
      msguid: envelope.id,
      injtime: Math.floor(Date.parse(envelope.received_at) / 1000),
      sender: envelope.from,
      recipient: recipient.address,
      is_first_attempt: recipient.attempts === 0 ? 1 : 0,
      mtaid_exists: config.virtualMtas.has(mtaid) ? 1 : 0,
    });
    if (outcome !== undefined) {
      const decision = preDeliveryDecision(outcome);
      switch (decision.kind) {
        case "error":
          this.#hookError(envelope.id, recipient.address, decision.error, decision.loadError);
          return { status: "deferred", error: HOOK_ERROR_TEXT, dsnStatus: "4.3.0" };
        case "pause":
          return {
            status: "deferred",
            error: decision.message,
            dsnStatus: statusOf(decision.message, false),
          };
        case "dump":
          return {
            status: "failed",
            error: decision.message,
            dsnStatus: statusOf(decision.message, true),
          };
        case "deliver":
          if (decision.asIfDomain !== undefined) {
            limitDomain = decision.asIfDomain;
            mtaid = chooseMta(config, envelope.from, limitDomain);
          }
          if (decision.mtaid !== undefined) mtaid = decision.mtaid;
          if (decision.sender !== undefined) sender = decision.sender;
      }
    }
    const mta = config.virtualMtas.get(mtaid);
    if (!mta) {
      const error = `the hook chose virtual MTA "${mtaid}", which is not configured`;
      this.#hookError(envelope.id, recipient.address, error);
      return { status: "deferred", error: HOOK_ERROR_TEXT, dsnStatus: "4.3.0" };
    }
    return { mta, domain, limitDomain, sender };
  }

  #hookError(msguid: string, recipient: string, error: string, loadError = false): void {
    // One line per error, as the reference's log has: the error's text
    // comes from the hook (a thrown message, or a key of its result quoted
    // in the validation error), and a line break in it would write a line
    // of the hook's own choosing into the log.
    const text = printable(error);
    // The reference logs a hook that does not load once per second, not
    // once per attempt: a large queue would flood the log on every retry.
    if (loadError) {
      const now = Date.now();
      if (now - this.#lastLoadErrorLog < 1000) return;
      this.#lastLoadErrorLog = now;
      this.#deps.hookLog(text);
      return;
    }
    this.#deps.hookLog(
      `error in pre_delivery_attempt_hook: msguid=[${msguid}], recipient=[${
        printable(recipient)
      }], ` +
        `error: ${text}`,
    );
  }

  /** One transaction for a group; results in the group's order. */
  async #deliverGroup(
    group: RecipientGroup,
    config: OutboundConfig,
    message: AttemptMessage,
  ): Promise<DeliveryResult[]> {
    const all = (result: DeliveryResult) => group.members.map(() => result);
    let hosts: MailHost[];
    let tls: TlsMode = "opportunistic";
    let requirement: TlsRequirement | undefined;
    const relay = config.smarthost;
    if (relay) {
      hosts = [relayHost(relay.host)];
      tls = relay.tls === "implicit" ? "implicit" : "required";
    } else {
      try {
        hosts = await mailHosts(this.#deps.resolver(), group.domain);
      } catch (err) {
        const routing = err instanceof RoutingError ? err : undefined;
        const error = err instanceof Error ? err.message : String(err);
        return all({
          status: routing?.permanent ? "failed" : "deferred",
          error,
          dsnStatus: routing?.status ?? "4.4.3",
        });
      }
      if (config.mtaSts && this.#deps.mtaSts) {
        requirement = await this.#deps.mtaSts.requirementFor(group.domain);
        if (requirement.mode === "enforce") {
          // RFC 8461 section 5: only MX hosts the policy names, over verified TLS.
          hosts = hosts.filter((host) => requirement!.allows(host.name));
          tls = "required";
          if (hosts.length === 0) {
            return all({
              status: "deferred",
              error: `no MX host of ${group.domain} matches its MTA-STS policy ` +
                `(mx: ${requirement.mx.join(", ")})`,
              dsnStatus: "4.7.5",
            });
          }
        }
      }
    }

    // Sessions are reused for the hosts they reach (the real domain's);
    // limits count by the domain deliver_as_if_to_domain names.
    const destination = {
      key: `${group.mta.name}|${relay ? "[smarthost]" : group.domain}`,
      limitKey: `${group.mta.name}|${relay ? "[smarthost]" : group.limitDomain}`,
      limit: group.mta.maxConnectionsPerDestination,
    };
    const lease = await this.#deps.pool.checkout(destination);
    let session = lease.session;
    // A cached connection the server has meanwhile closed fails at once;
    // then the message goes over a new one (RFC 5321 section 4.5.3.2.7
    // lets servers drop idle clients). Not once the message went out: the
    // server may have it (RFC 5321 section 6.1 accepts a duplicate from
    // the next attempt, not two copies in this one).
    for (let tries = 0;; tries++) {
      if (!session) {
        const opened = await openSession(hosts, group.mta, config, tls, this.#deps.logger);
        if ("error" in opened) {
          this.#deps.pool.checkin(destination, undefined);
          return all({ status: "deferred", error: opened.error, dsnStatus: "4.4.1" });
        }
        session = opened.session;
      }
      const reused = session.messages > 0;
      const result = await sendTransaction(session, group, message);
      this.#recycle(destination, session, config);
      if ("lost" in result && !result.afterData && reused && tries === 0) {
        session = undefined;
        const again = await this.#deps.pool.checkout(destination);
        session = again.session;
        continue;
      }
      if ("lost" in result) {
        return all({ status: "deferred", error: result.lost, dsnStatus: "4.4.2" });
      }
      return result;
    }
  }

  #recycle(destination: Destination, session: SmtpSession, config: OutboundConfig): void {
    if (session.messages >= config.messagesPerConnection) session.close();
    this.#deps.pool.checkin(destination, session.usable ? session : undefined);
  }
}
