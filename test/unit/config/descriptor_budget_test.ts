import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import {
  type AcmeConfig,
  type Config,
  DESCRIPTOR_COSTS,
  type DescriptorFit,
  descriptorNeeds,
  descriptorWarning,
  fitSmtpConnections,
  loadConfig,
  MIN_SMTP_CONNECTIONS,
  SessionCap,
} from "../../../src/config/mod.ts";
import { ADMIN_HTTP_LIMITS } from "../../../src/http/http1_server.ts";
import { CHALLENGE_HTTP_LIMITS } from "../../../src/tls/acme_service.ts";
import { ALPN_HTTP_LIMITS } from "../../../src/tls/alpn_server.ts";
import { SPARE_TARGET } from "../../../src/queue/spare_files.ts";

const ACME: AcmeConfig = {
  email: "postmaster@example.com",
  names: ["mx.example.com"],
  directoryUrl: "https://acme.test/directory",
  caPem: undefined,
  challenge: "http-01",
  httpListen: "0.0.0.0:80",
  httpsListen: "0.0.0.0:443",
  renew: true,
  retryInitialMs: 60_000,
};

describe("descriptor budget", () => {
  let defaults: Config;
  before(async () => {
    defaults = await loadConfig();
  });

  /** The defaults with `smtp.max_connections` and other changes. */
  const withSmtp = (maxConnections: number, more: Partial<Config> = {}): Config => ({
    ...defaults,
    smtp: { ...defaults.smtp, maxConnections },
    ...more,
  });

  it("descriptorNeeds() counts the defaults: 500 sessions of 3, 32 deliveries of 4, 100 outbound", () => {
    const needs = descriptorNeeds(defaults, 20);
    assert.equal(needs.perSession, 3);
    assert.equal(needs.smtp, 500 * 3);
    assert.equal(needs.delivery, 32 * 4 + 100);
    // Four hook points, one worker each.
    assert.equal(needs.hooks, 4 * 6);
    // The admin API is on by default; no ACME.
    assert.equal(needs.http, 33);
    // Open at start, one SMTP listener, the spare files, the reserve.
    assert.equal(needs.fixed, 20 + 1 + 16 + 64);
    assert.equal(needs.total, 1500 + 228 + 24 + 33 + 101);
    assert.equal(needs.total, 1886);
  });

  it("descriptorNeeds() adds executable hooks to each session, ACME and MTA-STS servers, listeners", () => {
    const exec = descriptorNeeds(
      { ...defaults, hooks: { ...defaults.hooks, allowUnsandboxedExec: true } },
      20,
    );
    assert.equal(exec.perSession, 7);
    assert.equal(exec.smtp, 500 * 7);

    const acme = descriptorNeeds({ ...defaults, acme: ACME }, 20);
    assert.equal(acme.http, 33 + 257);
    const [name, domain] = [...defaults.domains][0]!;
    const mtaSts = descriptorNeeds({
      ...defaults,
      acme: ACME,
      domains: new Map([[name, {
        ...domain,
        mtaSts: { mode: "enforce", maxAgeSeconds: 604800, mx: ["mx"], tlsRptRua: "mailto:t@x" },
      }]]),
    }, 20);
    assert.equal(mtaSts.http, 33 + 257 + 257);
    // A node that only reads certificates another renews runs no challenge server.
    const reader = descriptorNeeds({ ...defaults, acme: { ...ACME, renew: false } }, 20);
    assert.equal(reader.http, 33);

    const noAdmin = descriptorNeeds({
      ...defaults,
      admin: { ...defaults.admin, listen: undefined },
    }, 20);
    assert.equal(noAdmin.http, 0);

    const listeners = descriptorNeeds({
      ...defaults,
      submission: { listen: ["0.0.0.0:587"], listenTls: ["0.0.0.0:465"] },
    }, 20);
    assert.equal(listeners.fixed, 20 + 3 + 16 + 64);
  });

  it("DESCRIPTOR_COSTS match the caps of the HTTP servers and the spare files they count", () => {
    assert.equal(DESCRIPTOR_COSTS.admin, ADMIN_HTTP_LIMITS.maxConnections + 1);
    assert.equal(DESCRIPTOR_COSTS.acmeServer, CHALLENGE_HTTP_LIMITS.maxConnections + 1);
    assert.equal(DESCRIPTOR_COSTS.acmeServer, ALPN_HTTP_LIMITS.maxConnections + 1);
    assert.equal(DESCRIPTOR_COSTS.spareFiles, SPARE_TARGET);
  });

  it("fitSmtpConnections() keeps max_connections when the limit covers everything", () => {
    assert.deepEqual(fitSmtpConnections(defaults, 65536, 20), {
      limit: 65536,
      needed: 1886,
      configured: 500,
      fits: 500,
    });
    assert.equal(fitSmtpConnections(defaults, 1886, 20).fits, 500);
  });

  it("fitSmtpConnections() lowers max_connections to the sessions that fit", () => {
    // 1024 - (1886 - 1500) = 638 descriptors left for sessions of 3.
    assert.deepEqual(fitSmtpConnections(defaults, 1024, 20), {
      limit: 1024,
      needed: 1886,
      configured: 500,
      fits: 212,
    });
    assert.equal(fitSmtpConnections(defaults, 1885, 20).fits, 499);
    // The figure that fits is a most, never more than configured.
    assert.equal(fitSmtpConnections(withSmtp(100), 400, 20).fits, 10);
    assert.equal(fitSmtpConnections(withSmtp(5), 100, 20).fits, 5);
  });

  it("fitSmtpConnections() leaves at least MIN_SMTP_CONNECTIONS sessions however low the limit", () => {
    const fit = fitSmtpConnections(defaults, 200, 20);
    assert.equal(fit.fits, MIN_SMTP_CONNECTIONS);
    assert.equal(fit.needed, 1886);
  });

  it("descriptorWarning() names both numbers, the setting lowered and the fixes", () => {
    const fit: DescriptorFit = { limit: 1024, needed: 1886, configured: 500, fits: 212 };
    const text = descriptorWarning(fit, true)!;
    assert.match(text, /^the open file limit \(1024\) is below the 1886 descriptors /);
    assert.match(text, /smtp\.max_connections 500 is lowered to 212/);
    assert.match(text, /ulimit -n 1886/);
    assert.match(text, /LimitNOFILE=1886 in the systemd unit/);
    assert.match(text, /lower smtp\.max_connections/);
    assert.match(descriptorWarning(fit, false)!, /smtp\.max_connections 500 is kept/);
    assert.equal(descriptorWarning({ ...fit, limit: 1886 }, true), undefined);
  });

  it("SessionCap lowers max_connections and reports once per change of the figures", () => {
    const reports: Array<[DescriptorFit, number]> = [];
    const cap = new SessionCap({
      limit: 1024,
      openAtStart: 20,
      lower: true,
      report: (fit, effective, warning) => {
        assert.match(warning, /lowered to/);
        reports.push([fit, effective]);
      },
    });
    assert.equal(cap.maxConnections(defaults), 212);
    // A reload that changes nothing that counts says nothing again.
    assert.equal(cap.maxConnections({ ...defaults }), 212);
    assert.equal(reports.length, 1);
    assert.equal(cap.maxConnections(withSmtp(300)), 212);
    assert.equal(reports.length, 2);
    assert.deepEqual(reports[1]![0], { limit: 1024, needed: 1286, configured: 300, fits: 212 });
    // Settings that fit are taken as they are, silently; short again: reported again.
    assert.equal(cap.maxConnections(withSmtp(100)), 100);
    assert.equal(reports.length, 2);
    assert.equal(cap.maxConnections(withSmtp(300)), 212);
    assert.equal(reports.length, 3);
  });

  it("SessionCap keeps max_connections when told not to lower it, or when the limit is unknown", () => {
    const reports: number[] = [];
    const keep = new SessionCap({
      limit: 1024,
      openAtStart: 20,
      lower: false,
      report: (_fit, effective, warning) => {
        assert.match(warning, /is kept/);
        reports.push(effective);
      },
    });
    assert.equal(keep.maxConnections(defaults), 500);
    assert.deepEqual(reports, [500]);
    const unknown = new SessionCap({
      limit: undefined,
      openAtStart: 20,
      lower: true,
      report: () => assert.fail("nothing to report without a limit"),
    });
    assert.equal(unknown.maxConnections(defaults), 500);
    const unlimited = new SessionCap({
      limit: Infinity,
      openAtStart: 20,
      lower: true,
      report: () => assert.fail("nothing to report without a limit"),
    });
    assert.equal(unlimited.maxConnections(defaults), 500);
  });
});
