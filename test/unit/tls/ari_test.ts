/**
 * Tests of the ARI certificate identifier and renewalInfo answer (RFC
 * 9773), with a certificate made by openssl, whose own reading of the
 * Authority Key Identifier and serial is the reference.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ariCertId, fetchRenewalWindow, type JsonGet } from "../../../src/tls/ari.ts";
import { TestCa } from "../../support/test_ca.ts";

const b64url = (hex: string) =>
  Buffer.from(hex, "hex").toString("base64").replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");

describe("ariCertId()", () => {
  let ca: TestCa;
  let cert: string;
  before(async () => {
    ca = await TestCa.create();
    cert = (await ca.issue("mx.example.test")).cert;
  });
  after(() => ca.remove());

  it("joins the authority key id and the DER serial, each base64url", () => {
    const file = join(ca.dir, "ari.pem");
    writeFileSync(file, cert);
    const text = execFileSync("openssl", ["x509", "-in", file, "-noout", "-text"], {
      encoding: "utf8",
    });
    const aki = /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(text)![1]!;
    let serial = execFileSync("openssl", ["x509", "-in", file, "-noout", "-serial"], {
      encoding: "utf8",
    }).trim().replace(/^serial=/, "");
    if (serial.length % 2) serial = `0${serial}`;
    if (parseInt(serial.slice(0, 2), 16) & 0x80) serial = `00${serial}`;
    assert.equal(ariCertId(cert), `${b64url(aki.replace(/:/g, ""))}.${b64url(serial)}`);
  });

  it("asks renewalInfo/<id> and reads the suggested window", async () => {
    const asked: string[] = [];
    const get: JsonGet = (url) => {
      asked.push(url);
      return Promise.resolve({
        status: 200,
        data: {
          suggestedWindow: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" },
        },
        retryAfter: "21600",
      });
    };
    const window = await fetchRenewalWindow(get, "https://ca.test/ari/", cert, 1_000);
    assert.deepEqual(asked, [`https://ca.test/ari/${ariCertId(cert)}`]);
    assert.deepEqual(window, {
      start: Date.parse("2026-01-01T00:00:00Z"),
      end: Date.parse("2026-01-02T00:00:00Z"),
      retryAfter: 1_000 + 21_600_000,
    });
  });

  it("ignores an answer that is not a window", async () => {
    const answers: unknown[] = [
      { suggestedWindow: { start: "2026-01-02T00:00:00Z", end: "2026-01-01T00:00:00Z" } },
      { suggestedWindow: { start: "soon", end: "later" } },
      { nothing: true },
      "text",
    ];
    for (const data of answers) {
      const get: JsonGet = () => Promise.resolve({ status: 200, data, retryAfter: undefined });
      assert.equal(await fetchRenewalWindow(get, "https://ca.test/ari", cert, 0), undefined);
    }
    const missing: JsonGet = () =>
      Promise.resolve({ status: 404, data: {}, retryAfter: undefined });
    assert.equal(await fetchRenewalWindow(missing, "https://ca.test/ari", cert, 0), undefined);
  });
});
