/**
 * The TLS-ALPN-01 server (RFC 8737) asked the way a CA asks: openssl
 * s_client with ALPN `acme-tls/1` and the name as SNI, the certificate it
 * gets checked with acme-client's own validator. On Bun the challenge
 * certificate is presented. On Deno the same handshake fails, because its
 * TLS (rustls with webpki) refuses a certificate with an unknown critical
 * extension; this is why start-up refuses tls-alpn-01 on Deno. Should a
 * Deno release accept it, the Deno case fails here: lift the refusal in
 * src/tls/acme_service.ts then.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import acme from "acme-client";
import { ChallengeTokens } from "../../../src/tls/acme.ts";
import { startAlpnServer } from "../../../src/tls/alpn_server.ts";
import { TestCa } from "../../support/test_ca.ts";

const NAME = "mx.alpn.test";
const onDeno = "Deno" in globalThis;

/** openssl s_client as the CA: exit code and output (with the peer's certificate). */
function ask(port: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-servername",
        NAME,
        "-alpn",
        "acme-tls/1",
        "-showcerts",
      ],
      { timeout: 8_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
    ).stdin!.end();
  });
}

describe("TLS-ALPN-01 challenge server", () => {
  it(
    onDeno
      ? "cannot present the challenge certificate on Deno (the reason start-up refuses it)"
      : "presents the challenge certificate to an acme-tls/1 handshake",
    async () => {
      const keyAuthorization = "token-abc.thumbprint-xyz";
      const authz = { identifier: { type: "dns", value: NAME } };
      const [challengeKey, challengeCert] = await acme.crypto.createAlpnCertificate(
        authz as Parameters<typeof acme.crypto.createAlpnCertificate>[0],
        keyAuthorization,
      );
      // An ordinary certificate for the clients that ask for no challenge.
      const ca = await TestCa.create();
      const plain = await ca.issue("plain.test");
      const tokens = new ChallengeTokens();
      tokens.alpn.set(NAME, {
        keyPem: challengeKey.toString(),
        certPem: challengeCert.toString(),
      });
      const server = await startAlpnServer({
        host: "127.0.0.1",
        port: 0,
        tokens,
        initial: { certPem: plain.cert, keyPem: plain.key },
        fetch: () => new Response("no"),
      });
      try {
        const port = Number(server.address.split(":").pop());
        const { out } = await ask(port);
        const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0];
        const presented = pem !== undefined &&
          /ALPN protocol: acme-tls\/1/.test(out) &&
          acme.crypto.isAlpnCertificateAuthorizationValid(pem, keyAuthorization);
        assert.equal(presented, !onDeno, out);
      } finally {
        await server.close();
        await ca.remove();
      }
    },
  );
});
