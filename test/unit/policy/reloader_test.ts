import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, before, beforeEach, describe, it } from "node:test";
import { type CertificatePair, type Config, loadConfig } from "../../../src/config/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { type Reloader, startReloader, watchedFolders } from "../../../src/policy/reloader.ts";
import { PolicyStore } from "../../../src/policy/store.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `condition` every 10 ms; fails after `limitMs`. */
async function eventually(condition: () => boolean, what: string, limitMs = 5_000) {
  for (let waited = 0; waited <= limitMs; waited += 10) {
    if (condition()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A certificate pair read from `source` (and `keySource`); the PEM text does not matter here. */
function pair(source: string, keySource?: string): CertificatePair {
  return {
    source,
    ...(keySource === undefined ? {} : { keySource }),
    certPem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    keyPem: "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
  };
}

/** Time for a change to be noticed by the 500 ms poll, with room for a slow machine. */
const NOTICE_MS = 1_500;

describe("watchedFolders", () => {
  let base: Config;
  before(async () => {
    base = await loadConfig();
  });

  it("watchedFolders() is empty without a configuration directory", () => {
    assert.deepEqual([...watchedFolders({ ...base, configDir: undefined })], []);
  });

  it("watchedFolders() has the configuration directory at depth 4", () => {
    const folders = watchedFolders({ ...base, configDir: "/etc/postern", certificates: [] });
    assert.deepEqual([...folders], [["/etc/postern", 4]]);
  });

  it("watchedFolders() adds the folder of a certificate outside it at depth 0", () => {
    const folders = watchedFolders({
      ...base,
      configDir: "/etc/postern",
      certificates: [
        pair(
          "/etc/letsencrypt/live/mx.example/fullchain.pem",
          "/etc/letsencrypt/live/mx.example/privkey.pem",
        ),
        pair("/etc/postern/tls/cert.pem", "/etc/postern/tls/key.pem"),
        pair("/etc/postern/inline.pem"),
      ],
    });
    assert.deepEqual(
      new Map(folders),
      new Map([["/etc/postern", 4], ["/etc/letsencrypt/live/mx.example", 0]]),
    );
  });

  it("watchedFolders() adds the folder of a key kept apart from its certificate", () => {
    const folders = watchedFolders({
      ...base,
      configDir: "/etc/postern",
      certificates: [pair("/etc/postern/tls/cert.pem", "/srv/keys/key.pem")],
    });
    assert.deepEqual(new Map(folders), new Map([["/etc/postern", 4], ["/srv/keys", 0]]));
  });

  it("watchedFolders() does not take a sibling folder with the same prefix as inside", () => {
    const folders = watchedFolders({
      ...base,
      configDir: "/etc/postern",
      certificates: [pair("/etc/postern-tls/cert.pem")],
    });
    assert.deepEqual(new Map(folders), new Map([["/etc/postern", 4], ["/etc/postern-tls", 0]]));
  });

  it("watchedFolders() takes a folder whose name starts with '..' inside the directory as inside", () => {
    // Kubernetes mounts keep their files in "..data"-style folders.
    const folders = watchedFolders({
      ...base,
      configDir: "/etc/postern",
      certificates: [pair("/etc/postern/..data/tls.crt", "/etc/postern/..data/tls.key")],
    });
    assert.deepEqual(new Map(folders), new Map([["/etc/postern", 4]]));
  });
});

describe("startReloader", () => {
  let base: Config;
  let root: string;
  let configDir: string;
  let stores: PolicyStore[];
  let reloaders: Reloader[];
  let lines: string[];

  before(async () => {
    base = await loadConfig();
  });
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "postern-reloader-"));
    configDir = join(root, "conf");
    await mkdir(configDir);
    await writeFile(join(configDir, "postern.yaml"), "# test\n");
    stores = [];
    reloaders = [];
    lines = [];
  });
  afterEach(async () => {
    for (const reloader of reloaders) reloader.close();
    for (const store of stores) store.close();
    await rm(root, { recursive: true, force: true });
  });

  /** A store whose load returns `config()` and counts its calls. */
  function countingStore(config: () => Config) {
    const state = { loads: 0, store: undefined as unknown as PolicyStore };
    state.store = new PolicyStore(config(), {
      load: () => {
        state.loads++;
        return Promise.resolve(config());
      },
      logger: new Logger("debug", (line) => lines.push(line)),
      counters: new Counters(),
    });
    stores.push(state.store);
    return state;
  }

  function start(store: PolicyStore, onHangup?: (handler: () => void) => () => void): Reloader {
    const reloader = startReloader({ store, ...(onHangup ? { onHangup } : {}) });
    reloaders.push(reloader);
    return reloader;
  }

  /**
   * Rewrites `file` until a reload follows (bounded: 5 s), then waits until
   * reloads stop, so later counts start from a settled watch.
   */
  async function provokeReload(state: { loads: number }, file: string): Promise<void> {
    const seen = state.loads;
    for (let i = 1; i <= 20 && state.loads === seen; i++) {
      await writeFile(file, "x".repeat(i));
      for (let waited = 0; waited < 250 && state.loads === seen; waited += 10) await sleep(10);
    }
    assert.ok(state.loads > seen, `no reload after writing ${file}`);
    let settled = state.loads;
    for (let i = 0; i < 20; i++) {
      await sleep(100);
      if (state.loads === settled) break;
      settled = state.loads;
    }
  }

  it("a file written in the configuration directory reloads the policy", async () => {
    const config: Config = { ...base, configDir, dataDir: join(root, "data"), certificates: [] };
    const state = countingStore(() => config);
    start(state.store);
    await provokeReload(state, join(configDir, "postern.yaml"));
    assert.ok(state.store.current.epoch > 1);
    assert.match(lines.find((line) => line.includes("policy reloaded")) ?? "", / cause=watch /);
  });

  it("a file written in a subfolder of the configuration directory reloads the policy", async () => {
    const config: Config = { ...base, configDir, dataDir: join(root, "data"), certificates: [] };
    const state = countingStore(() => config);
    start(state.store);
    await mkdir(join(configDir, "domains"));
    await provokeReload(state, join(configDir, "domains", "example.org.yaml"));
  });

  it("files written in a data directory inside the configuration directory do not", async () => {
    const dataDir = join(configDir, "data");
    await mkdir(join(dataDir, "queue"), { recursive: true });
    const config: Config = { ...base, configDir, dataDir, certificates: [] };
    const state = countingStore(() => config);
    start(state.store);
    await provokeReload(state, join(configDir, "postern.yaml")); // the watch is live
    const seen = state.loads;
    await writeFile(join(dataDir, "queue", "msg-1"), "From: a\n");
    await mkdir(join(dataDir, "queue", "new"));
    await writeFile(join(dataDir, "queue", "new", "msg-2"), "From: b\n");
    await writeFile(join(dataDir, "lock"), "1\n");
    await sleep(NOTICE_MS);
    assert.equal(state.loads, seen, "the data directory is not configuration");
    // Still watching the rest.
    await provokeReload(state, join(configDir, "postern.yaml"));
  });

  it("a file written next to a certificate outside the directory reloads the policy", async () => {
    const live = join(root, "letsencrypt", "live", "mx.example");
    await mkdir(live, { recursive: true });
    const cert = join(live, "fullchain.pem");
    await writeFile(cert, "old\n");
    const config: Config = {
      ...base,
      configDir,
      dataDir: join(root, "data"),
      certificates: [pair(cert, join(live, "privkey.pem"))],
    };
    const state = countingStore(() => config);
    start(state.store);
    await provokeReload(state, cert);
  });

  it("a certificate folder that a reload adds is watched from then on", async () => {
    const live = join(root, "acme");
    await mkdir(live);
    const initial: Config = { ...base, configDir, dataDir: join(root, "data"), certificates: [] };
    const withCert: Config = { ...initial, certificates: [pair(join(live, "cert.pem"))] };
    let current = initial;
    const state = countingStore(() => current);
    let hangup: (() => void) | undefined;
    start(state.store, (handler) => {
      hangup = handler;
      return () => {};
    });
    current = withCert;
    assert.ok(hangup);
    hangup();
    await eventually(() => state.loads >= 1, "the reload that adds the certificate");
    await eventually(() => state.store.current.config.certificates.length === 1, "the swap");
    await provokeReload(state, join(live, "cert.pem"));
  });

  it("a file a failed reload names outside every watched folder is watched until it appears", async () => {
    // An ACME client's folder that does not exist yet when the policy names it.
    const live = join(root, "letsencrypt", "live", "mx");
    const certFile = join(live, "fullchain.pem");
    const initial: Config = { ...base, configDir, dataDir: join(root, "data"), certificates: [] };
    let loads = 0;
    let missing = true;
    const store = new PolicyStore(initial, {
      load: () => {
        loads++;
        if (missing) {
          return Promise.reject(
            Object.assign(new Error(`${certFile}: the certificate file is missing`), {
              file: certFile,
            }),
          );
        }
        return Promise.resolve({ ...initial, certificates: [pair(certFile)] });
      },
      logger: new Logger("debug", (line) => lines.push(line)),
      counters: new Counters(),
      errorLogIntervalMs: 10,
    });
    stores.push(store);
    let hangup: (() => void) | undefined;
    start(store, (handler) => {
      hangup = handler;
      return () => {};
    });
    hangup!();
    await eventually(() => store.status().lastError !== undefined, "the failed reload");
    const failedLoads = loads;
    await sleep(100);
    // The certificate arrives: nothing else changes, and no signal is sent.
    missing = false;
    await mkdir(live, { recursive: true });
    await writeFile(certFile, "-----BEGIN CERTIFICATE-----\n");
    await eventually(
      () => store.current.config.certificates.length === 1,
      "the reload it triggers",
    );
    assert.ok(loads > failedLoads);
    assert.equal(store.status().lastError, undefined);
  });

  it("onHangup: the handler reloads with cause signal, and close() unsubscribes", async () => {
    const config: Config = { ...base, configDir: undefined, certificates: [] };
    const state = countingStore(() => config);
    const handlers: Array<() => void> = [];
    let unsubscribed = 0;
    const reloader = start(state.store, (handler) => {
      handlers.push(handler);
      return () => {
        unsubscribed++;
      };
    });
    assert.equal(handlers.length, 1);
    assert.equal(state.loads, 0);
    handlers[0]!();
    await eventually(() => state.store.current.epoch === 2, "the reload after SIGHUP");
    assert.equal(state.loads, 1);
    const reloaded = lines.filter((line) => line.includes("policy reloaded"));
    assert.equal(reloaded.length, 1);
    assert.match(reloaded[0]!, / cause=signal /);
    reloader.close();
    assert.equal(unsubscribed, 1);
  });

  it("close() stops further reloads", async () => {
    const config: Config = { ...base, configDir, dataDir: join(root, "data"), certificates: [] };
    const state = countingStore(() => config);
    const reloader = start(state.store);
    await provokeReload(state, join(configDir, "postern.yaml"));
    reloader.close();
    const seen = state.loads;
    await writeFile(join(configDir, "postern.yaml"), "# changed after close\n");
    await writeFile(join(configDir, "new.yaml"), "a: 1\n");
    await sleep(NOTICE_MS);
    assert.equal(state.loads, seen);
  });
});
