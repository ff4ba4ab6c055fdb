import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CHALLENGE_HTTP_LIMITS,
  challengeLimits,
  MTA_STS_HTTP_LIMITS,
} from "../../../src/tls/acme_service.ts";

describe("the limits of the public HTTP servers", () => {
  it("let one client hold a few connections, far fewer than the cap", () => {
    for (const limits of [CHALLENGE_HTTP_LIMITS, MTA_STS_HTTP_LIMITS]) {
      assert.equal(limits.maxConnectionsPerAddress, 8, limits.name);
      assert.ok(limits.maxConnections >= 16 * limits.maxConnectionsPerAddress, limits.name);
    }
  });

  it("challengeLimits() lets one client fetch every name of an order at once", () => {
    assert.deepEqual(challengeLimits(2), CHALLENGE_HTTP_LIMITS);
    assert.equal(challengeLimits(8).maxConnectionsPerAddress, 8);
    assert.equal(challengeLimits(20).maxConnectionsPerAddress, 20);
    assert.equal(challengeLimits(20).maxConnections, CHALLENGE_HTTP_LIMITS.maxConnections);
    // Never above the cap itself.
    assert.equal(challengeLimits(1000).maxConnectionsPerAddress, 256);
  });
});
