/**
 * The HTTP side of certificates and MTA-STS: the HTTP-01 challenge server
 * (RFC 8555 section 8.3) and the HTTPS server of the MTA-STS policies
 * (RFC 8461 section 3.3), both Hono apps served by http1_server.ts (over
 * TLS for MTA-STS).
 *
 * @module
 */

import { Hono } from "hono";
import type { DomainConfig } from "../config/mod.ts";
import type { ChallengeTokens } from "../tls/acme.ts";
import { policyText } from "./mta_sts_policy.ts";

/**
 * Answers `GET /.well-known/acme-challenge/<token>` with the key
 * authorization being published; everything else is 404.
 */
export function challengeApp(tokens: ChallengeTokens): Hono {
  const app = new Hono();
  app.get("/.well-known/acme-challenge/:token", (c) => {
    const answer = tokens.http.get(c.req.param("token"));
    // RFC 8555 section 8.3: the body is the key authorization, as is.
    return answer === undefined ? c.text("not found\n", 404) : c.text(answer);
  });
  app.notFound((c) => c.text("not found\n", 404));
  return app;
}

/**
 * Serves `https://mta-sts.<domain>/.well-known/mta-sts.txt` for every
 * domain with a policy; the domain comes from the Host header. The policy
 * is looked up per request, so a reload changes it at once.
 */
export function mtaStsApp(domains: () => ReadonlyMap<string, DomainConfig>): Hono {
  const app = new Hono();
  app.get("/.well-known/mta-sts.txt", (c) => {
    const host = (c.req.header("host") ?? "").toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
    const domain = host.startsWith("mta-sts.") ? domains().get(host.slice(8)) : undefined;
    if (domain?.mtaSts === undefined) return c.text("no policy for this host\n", 404);
    // RFC 8461 section 3.3: 200, media type text/plain.
    return c.body(policyText(domain.mtaSts), 200, {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-cache",
    });
  });
  app.notFound((c) => c.text("not found\n", 404));
  return app;
}
