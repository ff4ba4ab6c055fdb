/**
 * A real `redis-server` for the cluster tests, started by the test itself
 * on a unix socket in a temporary directory (no TCP port to race for),
 * with persistence off. Never the system's service.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, afterEach, before } from "node:test";
import { type ClusterConfig, parseClusterUrl } from "../../src/cluster/settings.ts";

/** A running redis-server. */
export interface RedisServer {
  /** The unix socket it listens on. */
  socket: string;
  /** `unix:<socket>`, for `cluster.url`. */
  url: string;
  /** Sends one command (inline form) and returns the raw reply. */
  command(line: string): Promise<string>;
  /** SIGKILL, as a crash would; `start()` brings it back (empty) on the same socket. */
  kill(): Promise<void>;
  /** SIGSTOP: the server holds its connections and answers nothing (a slow server). */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** Starts it again after `kill()`. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

/**
 * Starts redis-server in a fresh temporary directory (with `password`:
 * `requirepass`); waits until it answers PING.
 */
export async function startRedis(options: { password?: string } = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), "postern-redis-"));
  const socket = join(dir, "redis.sock");
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = "";
  const start = async () => {
    child = spawn("redis-server", [
      "--port",
      "0",
      "--unixsocket",
      socket,
      "--unixsocketperm",
      "700",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      ...(options.password === undefined ? [] : ["--requirepass", options.password]),
    ], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (chunk: Uint8Array) => log += new TextDecoder().decode(chunk));
    child.stderr!.on("data", (chunk: Uint8Array) => log += new TextDecoder().decode(chunk));
    const current = child;
    exited = new Promise((res) => current.once("exit", () => res()));
    // Up to 10 s for the socket to answer.
    for (let i = 0; i < 200; i++) {
      if (current.exitCode !== null) throw new Error(`redis-server exited:\n${log}`);
      // With a password, a PING before AUTH is refused, but answered.
      if (/^(\+PONG|-NOAUTH)/.test(await command("PING").catch(() => ""))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not answer on ${socket}:\n${log}`);
  };
  const command = (line: string) =>
    new Promise<string>((res, rej) => {
      const s = connect(socket);
      let text = "";
      s.once("error", rej);
      s.on("data", (chunk) => {
        text += chunk.toString("latin1");
        if (text.endsWith("\r\n")) {
          s.destroy();
          res(text);
        }
      });
      s.write(line + "\r\n");
    });
  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, "SIGKILL");
      await exited;
    }
  };
  await start();
  return {
    socket,
    url: `unix:${socket}`,
    command,
    kill,
    start,
    pause: () => process.kill(child!.pid!, "SIGSTOP"),
    resume: () => process.kill(child!.pid!, "SIGCONT"),
    close: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A node's `cluster` settings for the test server `redis`: no password or
 * TLS, a heartbeat a second, `timeoutMs` 2 s unless set, and the node's
 * keys under `keyPrefix` (one per test, so tests share no state).
 */
export function clusterConfig(
  redis: RedisServer,
  options: { keyPrefix: string; nodeName?: string; timeoutMs?: number },
): ClusterConfig {
  return {
    server: parseClusterUrl(redis.url),
    url: redis.url,
    password: undefined,
    tlsCa: undefined,
    nodeName: options.nodeName ?? "a",
    timeoutMs: options.timeoutMs ?? 2_000,
    heartbeatMs: 1_000,
    keyPrefix: options.keyPrefix,
  };
}

/**
 * One redis-server for the tests of a describe block (call it there):
 * started before them, stopped after them. `redis` stands for it (each
 * member reads the running server when used); the links a test pushes to
 * `links` are closed after that test.
 */
export function redisSuite(): { redis: RedisServer; links: Array<{ close(): void }> } {
  let server: RedisServer | undefined;
  const links: Array<{ close(): void }> = [];
  const running = (): RedisServer => {
    if (!server) throw new Error("the suite's redis-server is not running");
    return server;
  };
  before(async () => {
    server = await startRedis();
  });
  afterEach(() => {
    for (const link of links.splice(0)) link.close();
  });
  after(async () => {
    await server?.close();
  });
  const redis: RedisServer = {
    get socket() {
      return running().socket;
    },
    get url() {
      return running().url;
    },
    command: (line) => running().command(line),
    kill: () => running().kill(),
    pause: () => running().pause(),
    resume: () => running().resume(),
    start: () => running().start(),
    close: () => running().close(),
  };
  return { redis, links };
}
