/**
 * The `replaces` field of a renewal order (RFC 9773 section 5), seen by a
 * stub ACME server on loopback that records every newOrder payload: a
 * renewal names the certificate it replaces when the directory offers
 * renewalInfo and not otherwise, and a CA that refuses the field gets the
 * order once more without it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { AcmeConfig } from "../../../src/config/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { AcmeManager, ChallengeTokens } from "../../../src/tls/acme.ts";
import { AcmeStore } from "../../../src/tls/acme_store.ts";
import { ariCertId } from "../../../src/tls/ari.ts";
import { TestCa } from "../../support/test_ca.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

interface StubOptions {
  /** The directory names a renewalInfo resource. */
  renewalInfo: boolean;
  /** newOrder with `replaces` is answered 409 alreadyReplaced. */
  refuseReplaces: boolean;
}

/** Just enough ACME for an order to be placed; its authorization ends in a 403. */
class StubAcme {
  readonly orders: Array<Record<string, unknown>> = [];
  #server: Server | undefined;
  #options: StubOptions = { renewalInfo: false, refuseReplaces: false };

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((resolve) => this.#server!.listen(0, "127.0.0.1", resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}`;
  }

  reset(options: StubOptions): void {
    this.#options = options;
    this.orders.length = 0;
  }

  async close(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise((resolve) => this.#server?.close(resolve));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body = "";
    for await (const chunk of req) body += chunk;
    const json = (status: number, data: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        "content-type": status >= 400 ? "application/problem+json" : "application/json",
        "replay-nonce": `n${Math.random().toString(36).slice(2)}`,
        ...headers,
      });
      res.end(JSON.stringify(data));
    };
    const base = this.url;
    switch (req.url) {
      case "/dir":
        return json(200, {
          newNonce: `${base}/nonce`,
          newAccount: `${base}/account`,
          newOrder: `${base}/order`,
          ...(this.#options.renewalInfo ? { renewalInfo: `${base}/renewal-info` } : {}),
        });
      case "/nonce":
        return json(200, {});
      case "/account":
        return json(201, { status: "valid" }, { location: `${base}/account/1` });
      case "/order": {
        const jws = JSON.parse(body) as { payload: string };
        const payload = JSON.parse(atob(jws.payload.replace(/-/g, "+").replace(/_/g, "/")));
        this.orders.push(payload);
        if (this.#options.refuseReplaces && "replaces" in payload) {
          return json(409, {
            type: "urn:ietf:params:acme:error:alreadyReplaced",
            detail: "stub refuses replaces",
          });
        }
        return json(201, {
          status: "pending",
          identifiers: payload.identifiers,
          authorizations: [`${base}/authz/1`],
          finalize: `${base}/finalize/1`,
        }, { location: `${base}/order/1` });
      }
      case "/authz/1":
        return json(403, { type: "urn:ietf:params:acme:error:unauthorized", detail: "stub end" });
      default:
        return json(404, { type: "about:blank", detail: "no such resource" });
    }
  }
}

describe("AcmeManager renewal orders and replaces", () => {
  let dir: string;
  let ca: TestCa;
  let certPem: string;
  const stub = new StubAcme();
  before(async () => {
    dir = await makeTempDir();
    ca = await TestCa.create();
    await stub.start();
    const pair = await ca.issue("mx.ours.test");
    certPem = pair.cert;
    await new AcmeStore(dir).saveCertificate(pair.key, pair.cert);
  });
  after(async () => {
    await stub.close();
    await removeDir(dir);
    await ca.remove();
  });

  /** Loads the stored certificate, renews once, returns the log lines. */
  async function renew(): Promise<string[]> {
    const config: AcmeConfig = {
      email: "postmaster@ours.test",
      names: ["mx.ours.test"],
      directoryUrl: `${stub.url}/dir`,
      caPem: undefined,
      challenge: "http-01",
      httpListen: "127.0.0.1:0",
      httpsListen: "127.0.0.1:0",
      renew: true,
      // Far away: only renewNow() orders.
      retryInitialMs: 3_600_000,
    };
    const lines: string[] = [];
    const manager = new AcmeManager({
      config,
      dataDir: dir,
      challenges: new ChallengeTokens(),
      logger: new Logger("debug", (line) => lines.push(line)),
      counters: new Counters(),
      onCertificate: () => {},
    });
    await manager.start();
    assert.equal(manager.status().state, "issued");
    await manager.renewNow();
    await manager.close();
    assert.match(manager.status().last_error ?? "", /stub end/);
    return lines;
  }

  it("names the replaced certificate when the directory offers renewalInfo", async () => {
    stub.reset({ renewalInfo: true, refuseReplaces: false });
    await renew();
    assert.equal(stub.orders.length, 1);
    assert.equal(stub.orders[0]!.replaces, ariCertId(certPem));
    assert.deepEqual(stub.orders[0]!.identifiers, [{ type: "dns", value: "mx.ours.test" }]);
  });

  it("leaves replaces out when the directory has no renewalInfo", async () => {
    stub.reset({ renewalInfo: false, refuseReplaces: false });
    await renew();
    assert.equal(stub.orders.length, 1);
    assert.equal("replaces" in stub.orders[0]!, false);
  });

  it("orders once more without replaces when the CA refuses it, and logs why", async () => {
    stub.reset({ renewalInfo: true, refuseReplaces: true });
    const lines = await renew();
    assert.equal(stub.orders.length, 2);
    assert.equal(stub.orders[0]!.replaces, ariCertId(certPem));
    assert.equal("replaces" in stub.orders[1]!, false);
    const refused = lines.find((line) => line.includes("replaces refused"));
    assert.ok(refused, lines.join("\n"));
    assert.match(refused, /stub refuses replaces/);
  });
});
