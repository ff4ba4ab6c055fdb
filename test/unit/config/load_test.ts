import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { RecipientResolver } from "../../../src/aliases/mod.ts";
import { ConfigError, DEFAULTS, loadConfig } from "../../../src/config/mod.ts";
import { hashPassword } from "../../../src/users/mod.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

/** Loads `configDir` and returns the ConfigError it throws. */
async function configError(configDir: string, dataDir?: string): Promise<ConfigError> {
  try {
    await loadConfig({ configDir, dataDir });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected loadConfig() to throw a ConfigError");
}

describe("loadConfig", () => {
  let root: string;
  let n = 0;
  before(async () => {
    root = await makeTempDir("postern-config-");
  });
  after(async () => {
    await removeDir(root);
  });

  /** A fresh configuration directory holding `files`. */
  async function configDir(files: Record<string, string>): Promise<string> {
    const dir = join(root, `c${n++}`);
    await mkdir(dir);
    await writeTree(dir, files);
    return dir;
  }

  it("loadConfig() runs on the embedded defaults when no directory is given", async () => {
    const config = await loadConfig();
    assert.equal(config.configDir, undefined);
    assert.deepEqual(config.smtp.listen, ["127.0.0.1:2525"]);
    assert.equal(config.smtp.maxMessageSize, 50 * 1024 * 1024);
    assert.equal(config.smtp.maxRecipients, 100);
    assert.equal(config.smtp.idleTimeoutMs, 5 * 60_000);
    assert.equal(config.smtp.commandTimeoutMs, DEFAULTS.smtp.commandTimeoutMs);
    assert.equal(config.smtp.minDataRate, 500);
    assert.equal(config.smtp.hardErrorLimit, 20);
    assert.equal(config.dataDir, resolve("./data"));
    assert.deepEqual([...config.domains.keys()], ["localhost"]);
    const localhost = config.domains.get("localhost")!;
    assert.equal(localhost.anyUser, true);
    assert.equal(localhost.users.size, 0);
    assert.equal(localhost.aliases.size, 0);
    assert.deepEqual(config.certificates, []);
    assert.deepEqual(config.aliases, { suffixSeparators: "+", dropCharacters: "." });
    assert.equal(config.delivery.retryInitialMs, DEFAULTS.delivery.retryInitialMs);
    assert.equal(config.log.level, "info");
    assert.ok(config.hostname.length > 0);
  });

  it("loadConfig() keeps 1.5 × max_message_size free by default, at least 100 MiB, or queue_minfree", async () => {
    const MiB = 1024 * 1024;
    assert.equal((await loadConfig()).smtp.queueMinfree, 100 * MiB); // 1.5 × 50 MiB is less
    const small = await configDir({ "postern.yaml": "smtp:\n  max_message_size: 10MiB\n" });
    assert.equal((await loadConfig({ configDir: small })).smtp.queueMinfree, 100 * MiB);
    const big = await configDir({ "postern.yaml": "smtp:\n  max_message_size: 200MiB\n" });
    assert.equal((await loadConfig({ configDir: big })).smtp.queueMinfree, 300 * MiB);
    const set = await configDir({ "postern.yaml": "smtp:\n  queue_minfree: 2GiB\n" });
    assert.equal((await loadConfig({ configDir: set })).smtp.queueMinfree, 2 * 1024 * MiB);
    const bad = await configDir({ "postern.yaml": "smtp:\n  queue_minfree: lots\n" });
    assert.match((await configError(bad)).message, /smtp\.queue_minfree/);
  });

  it("loadConfig() uses the defaults when the directory is empty", async () => {
    const dir = await configDir({});
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.configDir, dir);
    assert.deepEqual(config.smtp.listen, ["127.0.0.1:2525"]);
    assert.equal(config.smtp.maxMessageSize, 50 * 1024 * 1024);
    assert.equal(config.domains.get("localhost")?.anyUser, true);
  });

  it("loadConfig() treats an empty postern.yaml as all defaults", async () => {
    const dir = await configDir({ "postern.yaml": "# nothing set\n" });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.smtp.maxRecipients, 100);
  });

  it("loadConfig() applies the fields postern.yaml sets", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "hostname: mx.example.test",
        "smtp:",
        '  listen: ["0.0.0.0:25", "[::1]:2525"]',
        "  max_message_size: 10MiB",
        "  max_recipients: 5",
        "  max_connections: 7",
        "  max_connections_per_ip: 3",
        "  idle_timeout: 1m",
        "  command_timeout: 1m30s",
        "  greeting_delay: 2",
        "  max_command_length: 4096",
        "  min_data_rate: 2000",
        "  hard_error_limit: 0",
        "aliases:",
        '  suffix_separators: "+-"',
        '  drop_characters: ""',
        "delivery:",
        "  concurrency: 2",
        "  retry_initial: 30s",
        "  retry_max: 2h",
        "  max_queue_lifetime: 1d",
        "  pipe_timeout: 10s",
        "log:",
        "  level: debug",
        "",
      ].join("\n"),
    });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.hostname, "mx.example.test");
    assert.deepEqual(config.smtp.listen, ["0.0.0.0:25", "[::1]:2525"]);
    assert.equal(config.smtp.greetingDelayMs, 2000);
    assert.equal(config.smtp.maxMessageSize, 10 * 1024 * 1024);
    assert.equal(config.smtp.maxRecipients, 5);
    assert.equal(config.smtp.maxConnections, 7);
    assert.equal(config.smtp.maxConnectionsPerIp, 3);
    assert.equal(config.smtp.idleTimeoutMs, 60_000);
    assert.equal(config.smtp.commandTimeoutMs, 90_000);
    assert.equal(config.smtp.maxCommandLength, 4096);
    assert.equal(config.smtp.minDataRate, 2000);
    assert.equal(config.smtp.hardErrorLimit, 0);
    assert.deepEqual(config.aliases, { suffixSeparators: "+-", dropCharacters: "" });
    assert.deepEqual(config.delivery, {
      concurrency: 2,
      retryInitialMs: 30_000,
      retryMaxMs: 7_200_000,
      maxQueueLifetimeMs: 86_400_000,
      pipeTimeoutMs: 10_000,
    });
    assert.equal(config.log.level, "debug");
  });

  it("loadConfig() names the file, line and field path when a key is unknown", async () => {
    const dir = await configDir({
      "postern.yaml": 'hostname: mx.test\nsmtp:\n  listen: ["0.0.0.0:25"]\n  max_recipints: 5\n',
    });
    const err = await configError(dir);
    const file = join(dir, "postern.yaml");
    assert.equal(err.file, file);
    assert.ok(
      err.message.startsWith(`${file}:4: smtp.max_recipints `),
      `unexpected message: ${err.message}`,
    );
    assert.match(err.message, /not a known setting/);
  });

  it("loadConfig() names an unknown top-level key", async () => {
    const dir = await configDir({ "postern.yaml": "hostname: a\nhostnme: b\n" });
    const err = await configError(dir);
    assert.ok(err.message.startsWith(`${join(dir, "postern.yaml")}:2: hostnme `), err.message);
  });

  it("loadConfig() names the file, line and field when a value has the wrong type", async () => {
    const dir = await configDir({ "postern.yaml": "smtp:\n  max_recipients: many\n" });
    const err = await configError(dir);
    assert.equal(
      err.message,
      `${join(dir, "postern.yaml")}:2: smtp.max_recipients must be a whole number`,
    );
  });

  it("loadConfig() reports a bad size or duration with the value", async () => {
    const dir = await configDir({
      "postern.yaml": "delivery:\n  retry_initial: 5x\nsmtp:\n  max_message_size: 10QB\n",
    });
    const err = await configError(dir);
    const file = join(dir, "postern.yaml");
    assert.match(err.message, new RegExp(`^${escape(file)}:2: delivery\\.retry_initial "5x"`, "m"));
    assert.match(
      err.message,
      new RegExp(`^${escape(file)}:4: smtp\\.max_message_size "10QB"`, "m"),
    );
  });

  it("loadConfig() refuses values below a minimum", async () => {
    const dir = await configDir({ "postern.yaml": "smtp:\n  max_command_length: 100\n" });
    const err = await configError(dir);
    assert.match(err.message, /:2: smtp\.max_command_length must be at least 512$/);
    const rate = await configError(
      await configDir({ "postern.yaml": "smtp:\n  min_data_rate: 0\n" }),
    );
    assert.match(rate.message, /:2: smtp\.min_data_rate must be at least 1$/);
  });

  it("loadConfig() refuses a malformed listen address", async () => {
    const dir = await configDir({ "postern.yaml": "smtp:\n  listen:\n    - localhost\n" });
    const err = await configError(dir);
    assert.match(err.message, /:3: smtp\.listen\.0 must be an address/);
  });

  it("loadConfig() refuses an unknown log level", async () => {
    const dir = await configDir({ "postern.yaml": "log:\n  level: loud\n" });
    const err = await configError(dir);
    assert.match(err.message, /:2: log\.level must be one of debug, info, warn, error/);
  });

  it("loadConfig() reports invalid YAML with its line", async () => {
    const dir = await configDir({
      "postern.yaml": "hostname: mx.test\nsmtp:\n  listen: @all\nlog:\n  level: info\n",
    });
    const err = await configError(dir);
    assert.equal(err.file, join(dir, "postern.yaml"));
    assert.ok(
      err.message.startsWith(`${join(dir, "postern.yaml")}:3: invalid YAML: `),
      err.message,
    );
    assert.equal(err.message.includes("\n"), false, "one line");
  });

  it("loadConfig() reports a duplicate YAML key with its line", async () => {
    const dir = await configDir({
      "postern.yaml": "hostname: a\nlog:\n  level: info\nhostname: b\n",
    });
    const err = await configError(dir);
    assert.ok(
      err.message.startsWith(`${join(dir, "postern.yaml")}:4: invalid YAML: `),
      err.message,
    );
  });

  it("loadConfig() reports a top-level value that is not a mapping", async () => {
    const dir = await configDir({ "postern.yaml": "- just\n- a list\n" });
    const err = await configError(dir);
    assert.ok(err.message.startsWith(`${join(dir, "postern.yaml")}:1: `), err.message);
    const scalar = await configDir({ "postern.yaml": "just text\n" });
    const scalarErr = await configError(scalar);
    assert.ok(scalarErr.message.startsWith(`${join(scalar, "postern.yaml")}`), scalarErr.message);
    assert.match(scalarErr.message, /:1: the file must be a mapping of settings, not the text/);
  });

  it("loadConfig() throws ConfigError when the directory does not exist", async () => {
    const missing = join(root, "does-not-exist");
    const err = await configError(missing);
    assert.equal(err.file, missing);
    assert.match(err.message, /cannot read the configuration directory/);
  });

  it("loadConfig() throws ConfigError when the path is a file", async () => {
    const file = join(root, "a-file");
    await writeFile(file, "");
    const err = await configError(file);
    assert.match(err.message, /not a directory/);
  });

  it("loadConfig() reads users and aliases from domains/ folders", async () => {
    const hash = await hashPassword("bob's password");
    const dir = await configDir({
      "domains/Example.TEST/users": `# users\nAlice\nbob: ${hash}\ncarol  ${hash}\n\n`,
      "domains/Example.TEST/aliases": "sales: alice, bob\nfwd: x@remote.test\n",
      "domains/other.test/users": "dave\n",
    });
    const config = await loadConfig({ configDir: dir });
    assert.deepEqual([...config.domains.keys()].sort(), ["example.test", "other.test"]);
    const example = config.domains.get("example.test")!;
    assert.equal(example.name, "example.test");
    assert.equal(example.anyUser, false);
    assert.deepEqual([...example.users].sort(), ["alice", "bob", "carol"]);
    assert.deepEqual(example.aliases.get("sales"), [
      { kind: "address", address: "alice@example.test" },
      { kind: "address", address: "bob@example.test" },
    ]);
    assert.deepEqual(example.aliases.get("fwd"), [{ kind: "address", address: "x@remote.test" }]);
    assert.deepEqual([...config.domains.get("other.test")!.users], ["dave"]);
    // Once a domain is configured, localhost is no longer implied.
    assert.equal(config.domains.has("localhost"), false);
  });

  it("loadConfig() keeps the password hashes of users who may log in, and refuses other text", async () => {
    const hash = await hashPassword("pw");
    const good = await configDir({ "domains/example.test/users": `alice ${hash}\nbob\n` });
    const example = (await loadConfig({ configDir: good })).domains.get("example.test")!;
    assert.deepEqual([...example.passwords], [["alice", hash]]);
    const bad = await configDir({ "domains/example.test/users": "alice\nbob plain-password\n" });
    await assert.rejects(
      loadConfig({ configDir: bad }),
      (err: Error) =>
        err instanceof ConfigError &&
        err.message.includes('users:2: the password of "bob" is not a hash'),
    );
  });

  it("loadConfig() turns an IDN domain folder into A-labels", async () => {
    const dir = await configDir({ "domains/bücher.de/users": "jörg\n" });
    const config = await loadConfig({ configDir: dir });
    assert.deepEqual([...config.domains.keys()], ["xn--bcher-kva.de"]);
    assert.deepEqual([...config.domains.get("xn--bcher-kva.de")!.users], ["jörg"]);
  });

  it("loadConfig() ignores hidden folders and plain files in domains/", async () => {
    const dir = await configDir({
      "domains/.hidden/users": "x\n",
      "domains/README": "not a domain\n",
      "domains/ex.test/users": "a\n",
    });
    const config = await loadConfig({ configDir: dir });
    assert.deepEqual([...config.domains.keys()], ["ex.test"]);
  });

  it("loadConfig() adds domains listed only in postern.yaml", async () => {
    const dir = await configDir({
      "postern.yaml": "domains:\n  any.test:\n    any_user: true\n  plain.test:\n",
    });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.domains.get("any.test")?.anyUser, true);
    assert.equal(config.domains.get("plain.test")?.anyUser, false);
    assert.equal(config.domains.has("localhost"), false);
  });

  it("loadConfig() merges postern.yaml settings into the domain folder of the same name", async () => {
    const dir = await configDir({
      "postern.yaml": "domains:\n  ex.test:\n    any_user: true\n",
      "domains/ex.test/users": "alice\n",
    });
    const config = await loadConfig({ configDir: dir });
    const ex = config.domains.get("ex.test")!;
    assert.equal(ex.anyUser, true);
    assert.deepEqual([...ex.users], ["alice"]);
  });

  it("loadConfig() keeps a folder's users when postern.yaml spells the domain in other case", async () => {
    const dir = await configDir({
      "postern.yaml": "domains:\n  Example.TEST:\n    any_user: true\n",
      "domains/example.test/users": "alice\n",
    });
    const config = await loadConfig({ configDir: dir });
    assert.deepEqual([...config.domains.keys()], ["example.test"]);
    const ex = config.domains.get("example.test")!;
    assert.equal(ex.anyUser, true);
    assert.deepEqual([...ex.users], ["alice"]);
  });

  it("loadConfig() makes a user listed with a drop character reachable", async () => {
    const dir = await configDir({ "domains/ex.test/users": "first.last\n" });
    const config = await loadConfig({ configDir: dir });
    // The daemon builds its resolver exactly like this (src/serve.ts).
    const resolver = new RecipientResolver(config.domains, config.aliases);
    assert.equal(resolver.exists("first.last@ex.test"), true);
    assert.equal(resolver.exists("First.Last+tag@ex.test"), true);
  });

  it("loadConfig() reports an aliases syntax error as <path>:<line>", async () => {
    const dir = await configDir({
      "domains/ex.test/aliases": "# comment\nok: alice\nbroken line\n",
    });
    const err = await configError(dir);
    const file = join(dir, "domains", "ex.test", "aliases");
    assert.equal(err.file, file);
    assert.ok(err.message.startsWith(`${file}:3: `), err.message);
    assert.match(err.message, /Cannot parse alias line/);
  });

  it("loadConfig() reports a user with a domain as <path>:<line>", async () => {
    const dir = await configDir({ "domains/ex.test/users": "alice\nbob@ex.test\n" });
    const err = await configError(dir);
    const file = join(dir, "domains", "ex.test", "users");
    assert.ok(err.message.startsWith(`${file}:2: user "bob@ex.test"`), err.message);
  });

  it("loadConfig() resolves a relative data_dir against the config directory", async () => {
    const dir = await configDir({ "postern.yaml": "data_dir: var/spool-data\n" });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.dataDir, join(dir, "var", "spool-data"));
  });

  it("loadConfig() keeps an absolute data_dir as it is", async () => {
    const dir = await configDir({ "postern.yaml": `data_dir: ${JSON.stringify(root)}\n` });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.dataDir, root);
  });

  it("loadConfig() lets the --data option win over data_dir", async () => {
    const dir = await configDir({ "postern.yaml": "data_dir: var/data\n" });
    const config = await loadConfig({ configDir: dir, dataDir: "cli-data" });
    assert.equal(config.dataDir, resolve("cli-data"));
    const absolute = await loadConfig({ configDir: dir, dataDir: join(root, "abs") });
    assert.equal(absolute.dataDir, join(root, "abs"));
  });

  it("loadConfig() reports tls with a cert but no key", async () => {
    const dir = await configDir({ "postern.yaml": "tls:\n  cert: cert.pem\n" });
    const err = await configError(dir);
    assert.match(err.message, /tls needs both cert and key/);
  });

  it("loadConfig() reports a missing certificate file relative to the config dir", async () => {
    const dir = await configDir({ "postern.yaml": "tls:\n  cert: c.pem\n  key: k.pem\n" });
    const err = await configError(dir);
    assert.equal(err.file, join(dir, "c.pem"));
    assert.match(err.message, /certificate file is missing/);
  });

  it("loadConfig() reports a certs/ folder whose certificate is not PEM", async () => {
    const dir = await configDir({
      "certs/mx.test/fullchain.pem": "not a certificate\n",
      "certs/mx.test/privkey.pem": "not a key\n",
    });
    const err = await configError(dir);
    assert.equal(err.file, join(dir, "certs", "mx.test", "fullchain.pem"));
    assert.match(err.message, /not a PEM certificate/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
