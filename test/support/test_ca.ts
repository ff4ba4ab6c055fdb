/**
 * A throwaway certificate authority for tests, made with the openssl
 * command: a CA certificate, and server certificates it signs for given
 * DNS names. Lets a test stand up TLS servers whose certificates verify
 * against a root the process under test is told to trust (DENO_CERT,
 * NODE_EXTRA_CA_CERTS), as real PKIX validation requires.
 *
 * @example
 * ```ts ignore
 * const ca = await TestCa.create();
 * const leaf = await ca.issue("mx.example.test");
 * // ca.certFile is the PEM to trust; leaf.key and leaf.cert serve TLS.
 * await ca.remove();
 * ```
 *
 * @module
 */

import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A key and certificate in PEM. */
export interface KeyPair {
  key: string;
  cert: string;
}

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args[0]} failed: ${stderr || err.message}`));
      else resolve();
    });
  });
}

/** A CA on disk in a temporary directory. */
export class TestCa {
  /** The directory holding the CA's files. */
  readonly dir: string;
  /** Path of the CA certificate (PEM): what a client trusts. */
  readonly certFile: string;
  /** The CA certificate (PEM). */
  readonly cert: string;
  #keyFile: string;
  #issued = 0;

  private constructor(dir: string, cert: string) {
    this.dir = dir;
    this.certFile = join(dir, "ca.pem");
    this.#keyFile = join(dir, "ca.key");
    this.cert = cert;
  }

  /** Creates a CA valid for two days, named `name`. */
  static async create(name = "Postern Test CA"): Promise<TestCa> {
    const dir = await mkdtemp(join(tmpdir(), "postern-ca-"));
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-sha256",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-keyout",
      join(dir, "ca.key"),
      "-out",
      join(dir, "ca.pem"),
    ]);
    return new TestCa(dir, await readFile(join(dir, "ca.pem"), "utf8"));
  }

  /** A server certificate for the DNS names `names` (the first is the subject). */
  async issue(...names: string[]): Promise<KeyPair> {
    const n = ++this.#issued;
    const file = (ext: string) => join(this.dir, `leaf${n}.${ext}`);
    await writeFile(
      file("ext"),
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        `subjectAltName=${names.map((name) => `DNS:${name}`).join(",")}`,
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
        "",
      ].join("\n"),
    );
    await openssl([
      "req",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${names[0]}`,
      "-keyout",
      file("key"),
      "-out",
      file("csr"),
    ]);
    await openssl([
      "x509",
      "-req",
      "-sha256",
      "-days",
      "2",
      "-in",
      file("csr"),
      "-CA",
      this.certFile,
      "-CAkey",
      this.#keyFile,
      "-set_serial",
      String(1000 + n),
      "-extfile",
      file("ext"),
      "-out",
      file("pem"),
    ]);
    return {
      key: await readFile(file("key"), "utf8"),
      cert: await readFile(file("pem"), "utf8"),
    };
  }

  /** Deletes the CA's files. */
  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
