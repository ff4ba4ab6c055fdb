import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { domainAsSent } from "../../../src/smtp/address_as_sent.ts";

describe("domainAsSent", () => {
  it("gives back the A-labels the client wrote, in its case", () => {
    assert.equal(
      domainAsSent("bob@bücher.test", "RCPT TO:<bob@XN--bcher-kva.test>"),
      "bob@XN--bcher-kva.test",
    );
    assert.equal(
      domainAsSent("a@bücher.test", "MAIL FROM:<a@xn--bcher-kva.test> SIZE=100 BODY=8BITMIME"),
      "a@xn--bcher-kva.test",
    );
  });

  it("takes the domain after a source route and after a quoted local part holding an @", () => {
    assert.equal(
      domainAsSent(
        "bob@bücher.test",
        "RCPT TO:<@relay.test,@xn--other-q.test:bob@xn--bcher-kva.test>",
      ),
      "bob@xn--bcher-kva.test",
    );
    assert.equal(
      domainAsSent('"a@b"@bücher.test', 'RCPT TO:<"a@b"@xn--bcher-kva.test>'),
      '"a@b"@xn--bcher-kva.test',
    );
  });

  it("keeps a domain the client wrote in U-labels, and an address that is ASCII already", () => {
    assert.equal(domainAsSent("bob@bücher.test", "RCPT TO:<bob@bücher.test>"), "bob@bücher.test");
    assert.equal(domainAsSent("bob@[IPv6:::1]", "RCPT TO:<bob@[IPv6:0::1]>"), "bob@[IPv6:::1]");
    assert.equal(domainAsSent("postmaster", "RCPT TO:<postmaster>"), "postmaster");
  });

  it("changes nothing it cannot match to the line", () => {
    assert.equal(
      domainAsSent("bob@bücher.test", "RCPT TO:bob@xn--bcher-kva.test"),
      "bob@bücher.test",
    );
    assert.equal(domainAsSent("bob@bücher.test", "RCPT TO:<bob@[1.2.3.4]>"), "bob@bücher.test");
  });
});
