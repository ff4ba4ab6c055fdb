import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClientSlots } from "../../../src/net/client_slots.ts";
import { ShareRefusals } from "../../../src/http/client_share.ts";

describe("ClientSlots", () => {
  it("gives each client its share, and a released slot back", () => {
    const slots = new ClientSlots(2);
    assert.equal(slots.claim("192.0.2.1"), true);
    assert.equal(slots.claim("192.0.2.1"), true);
    assert.equal(slots.claim("192.0.2.1"), false);
    assert.equal(slots.claim("192.0.2.2"), true);
    slots.release("192.0.2.1");
    assert.equal(slots.claim("192.0.2.1"), true);
    assert.equal(slots.claim("192.0.2.1"), false);
  });

  it("forgets a client that holds nothing", () => {
    const slots = new ClientSlots(1);
    slots.claim("192.0.2.1");
    slots.claim("192.0.2.2");
    assert.equal(slots.clients, 2);
    slots.release("192.0.2.1");
    slots.release("192.0.2.2");
    assert.equal(slots.clients, 0);
    // A release without a claim takes nothing below zero.
    slots.release("192.0.2.3");
    assert.equal(slots.clients, 0);
    assert.equal(slots.claim("192.0.2.3"), true);
  });
});

describe("ShareRefusals", () => {
  it("says to log the first refusal of each client per interval", () => {
    let now = 1_000_000;
    const log = new ShareRefusals(60_000, 100, () => now);
    assert.equal(log.shouldLog("192.0.2.1"), true);
    assert.equal(log.shouldLog("192.0.2.1"), false);
    assert.equal(log.shouldLog("192.0.2.2"), true);
    now += 59_999;
    assert.equal(log.shouldLog("192.0.2.1"), false);
    now += 1;
    assert.equal(log.shouldLog("192.0.2.1"), true);
    assert.equal(log.shouldLog("192.0.2.2"), true);
    assert.equal(log.shouldLog("192.0.2.2"), false);
  });

  it("remembers at most maxClients: past them, new clients go unlogged until the oldest expire", () => {
    let now = 0;
    const log = new ShareRefusals(60_000, 2, () => now);
    assert.equal(log.shouldLog("a"), true);
    now += 30_000;
    assert.equal(log.shouldLog("b"), true);
    assert.equal(log.shouldLog("c"), false);
    now += 30_000;
    // "a" expired and was forgotten: room for "c".
    assert.equal(log.shouldLog("c"), true);
    assert.equal(log.shouldLog("d"), false);
  });
});
