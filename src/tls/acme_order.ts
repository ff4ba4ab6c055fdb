/**
 * One ACME order (RFC 8555 section 7.4) placed step by step through
 * acme-client's lower-level calls, because its `auto()` builds the order
 * payload itself and cannot carry the `replaces` field of ACME Renewal
 * Information (RFC 9773 section 5).
 *
 * @module
 */

import type { Authorization, Client, Order } from "acme-client";
import type { Logger } from "../log/mod.ts";

/** The acme-client calls an order needs (a fake stands in for it in tests). */
export type OrderClient = Pick<
  Client,
  | "getAccountUrl"
  | "createAccount"
  | "createOrder"
  | "getAuthorizations"
  | "getChallengeKeyAuthorization"
  | "completeChallenge"
  | "waitForValidStatus"
  | "deactivateAuthorization"
  | "finalizeOrder"
  | "getCertificate"
>;

/** A challenge as acme-client hands it over. */
export type OrderChallenge = Authorization["challenges"][number];

/** What {@linkcode placeOrder} needs besides the client. */
export interface OrderRequest {
  names: string[];
  csr: Parameters<OrderClient["finalizeOrder"]>[1];
  email: string;
  /** The challenge type to answer (http-01 or tls-alpn-01). */
  challenge: string;
  /**
   * The ARI certificate id of the certificate this order renews, when the
   * CA's directory offers renewalInfo (RFC 9773 section 5); else undefined.
   */
  replaces: string | undefined;
  /** Publishes the answer to a challenge. */
  publish: (authz: Authorization, challenge: OrderChallenge, keyAuth: string) => Promise<void>;
  /** Withdraws it again. */
  withdraw: (authz: Authorization, challenge: OrderChallenge) => Promise<void>;
  logger: Logger;
}

/**
 * Registers the account if needed, creates the order (with `replaces` when
 * given, and once more without it when the CA refuses it), answers the
 * challenges, finalizes and returns the PEM chain.
 */
export async function placeOrder(client: OrderClient, request: OrderRequest): Promise<string> {
  try {
    client.getAccountUrl();
  } catch {
    await client.createAccount({
      termsOfServiceAgreed: true,
      contact: [`mailto:${request.email}`],
    });
  }
  const order = await createOrder(client, request);
  const authorizations = await client.getAuthorizations(order);
  const answers = authorizations.map((authz) => authorize(client, authz, request));
  try {
    await Promise.all(answers);
  } catch (err) {
    await Promise.allSettled(answers);
    throw err;
  }
  const finalized = await client.finalizeOrder(order, request.csr);
  return await client.getCertificate(finalized);
}

async function createOrder(client: OrderClient, request: OrderRequest): Promise<Order> {
  const identifiers = request.names.map((value) => ({ type: "dns", value }));
  if (request.replaces === undefined) return await client.createOrder({ identifiers });
  try {
    // RFC 9773 section 5: a renewal names the certificate it replaces, so
    // the CA can exempt it from rate limits and track the replacement.
    return await client.createOrder(
      { identifiers, replaces: request.replaces } as Parameters<OrderClient["createOrder"]>[0],
    );
  } catch (err) {
    // RFC 9773 section 5: the CA may refuse `replaces` (an unknown or
    // already replaced certificate, or no ARI support); the renewal itself
    // must still happen, so the order is placed once more without it.
    request.logger.warn("acme order with replaces refused; ordering without it", {
      replaces: request.replaces,
      error: err instanceof Error ? err.message : String(err),
    });
    return await client.createOrder({ identifiers });
  }
}

/** Answers one authorization with the configured challenge type. */
async function authorize(
  client: OrderClient,
  authz: Authorization,
  request: OrderRequest,
): Promise<void> {
  if (authz.status === "valid") return;
  const name = authz.identifier.value;
  const challenge = authz.challenges.find((c) => (c.type as string) === request.challenge);
  if (challenge === undefined) {
    throw new Error(`The CA offers no ${request.challenge} challenge for "${name}"`);
  }
  const keyAuth = await client.getChallengeKeyAuthorization(challenge);
  let completed = false;
  try {
    await request.publish(authz, challenge, keyAuth);
    await client.completeChallenge(challenge);
    completed = true;
    await client.waitForValidStatus(challenge);
  } catch (err) {
    // An authorization left pending would be reused by the next order.
    if (!completed) await client.deactivateAuthorization(authz).catch(() => {});
    throw err;
  } finally {
    await request.withdraw(authz, challenge).catch(() => {});
  }
}
