/**
 * Tests of virtual MTA routing: `chooseMta()` picks the first route whose
 * sender and recipient domains match, else "default"; `domainOf()` takes
 * the domain of an address.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseMta, domainOf } from "../../../src/outbound/route.ts";
import type { OutboundConfig, Route } from "../../../src/outbound/settings.ts";

/** An outbound configuration with `routes`; only the routes matter here. */
function withRoutes(routes: Route[]): OutboundConfig {
  return { routes } as unknown as OutboundConfig;
}

function route(mta: string, sender?: string, recipient?: string): Route {
  return { senderDomain: sender, recipientDomain: recipient, mta };
}

describe("domainOf", () => {
  it("domainOf() returns the domain in lower case", () => {
    assert.equal(domainOf("Alice@Example.TEST"), "example.test");
  });

  it("domainOf() splits at the last @, so a quoted local part may hold one", () => {
    assert.equal(domainOf('"a@b"@Ex.Test'), "ex.test");
  });

  it("domainOf() returns an empty string for an address without a domain", () => {
    assert.equal(domainOf("postmaster"), "");
    assert.equal(domainOf(""), "");
  });
});

describe("chooseMta", () => {
  it("chooseMta() returns default when there are no routes", () => {
    assert.equal(chooseMta(withRoutes([]), "a@ours.test", "theirs.test"), "default");
  });

  it("chooseMta() matches a route by the sender's domain, whatever its case", () => {
    const config = withRoutes([route("bulk", "news.test")]);
    assert.equal(chooseMta(config, "list@News.Test", "anywhere.test"), "bulk");
    assert.equal(chooseMta(config, "list@other.test", "anywhere.test"), "default");
  });

  it("chooseMta() matches a route by the recipient's domain", () => {
    const config = withRoutes([route("gmail", undefined, "gmail.test")]);
    assert.equal(chooseMta(config, "a@ours.test", "gmail.test"), "gmail");
    assert.equal(chooseMta(config, "a@ours.test", "yahoo.test"), "default");
  });

  it("chooseMta() needs both domains to match when a route names both", () => {
    const config = withRoutes([route("both", "news.test", "gmail.test")]);
    assert.equal(chooseMta(config, "x@news.test", "gmail.test"), "both");
    assert.equal(chooseMta(config, "x@news.test", "yahoo.test"), "default");
    assert.equal(chooseMta(config, "x@other.test", "gmail.test"), "default");
  });

  it("chooseMta() takes the first route that matches", () => {
    const config = withRoutes([
      route("first", undefined, "gmail.test"),
      route("second", "news.test"),
      route("third", "news.test", "gmail.test"),
    ]);
    assert.equal(chooseMta(config, "x@news.test", "gmail.test"), "first");
    assert.equal(chooseMta(config, "x@news.test", "yahoo.test"), "second");
  });

  it("chooseMta() never matches a sender-domain route for the null sender", () => {
    const config = withRoutes([route("bulk", "news.test"), route("rcpt", undefined, "to.test")]);
    assert.equal(chooseMta(config, "", "other.test"), "default");
    assert.equal(chooseMta(config, "", "to.test"), "rcpt");
  });
});
