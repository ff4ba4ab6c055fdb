/**
 * Keeps an SMTP listener accepting where the runtime's `node:net` server
 * can stop for good: Deno's stops after one accept fails with EMFILE (see
 * `netServerStopsAfterAcceptError` in src/runtime/limits.ts). Nothing in
 * the process shows it: no "error" event, `listening` stays true,
 * `getConnections()` answers, and the kernel still completes handshakes
 * into the listen queue, where clients wait until they give up. Port 25
 * would stay dead while the process lives.
 *
 * So the listener is checked from outside, the way a client sees it:
 * every {@linkcode WATCH_INTERVAL_MS} the server connects to its own
 * listener (a probe). A probe leaves from a port chosen for it, so the
 * listener knows it when it accepts it ({@linkcode ListenerWatch.claim})
 * and drops it before smtp-server sees it: no session, no log line. A probe
 * that connects but is not accepted within {@linkcode PROBE_TIMEOUT_MS},
 * or that cannot even connect in that time (a full listen queue drops the
 * handshake), is a strike; a second look follows at once, and two strikes
 * in a row close the listener and listen again on the same address, which
 * brings it back. Sessions in progress are not touched; connections still
 * in the old listen queue are reset, and their clients retry. A probe that
 * fails at once proves nothing (EMFILE while descriptors are still short,
 * ECONNREFUSED) and is no strike: the listener is listened again once a
 * probe can reach it, that is once descriptors are free.
 *
 * A probe connected and not accepted is proof; one that got no answer is
 * not quite (a firewall may drop it). Restarts for no answer, one after
 * the other with nothing else seen between, double the wait before the
 * next check (up to {@linkcode MAX_WATCH_INTERVAL_MS}): a probe that
 * cannot reach its listener costs a restart every few minutes, not every
 * few seconds. A listener that ran out of descriptors is soon probed
 * unavailable (EMFILE) or not accepted, which ends the doubling: once
 * descriptors are free, it is listened again within one interval and two
 * probe timeouts.
 *
 * @module
 */

import { connect, type Socket } from "node:net";

/** How often a listener is checked. */
export const WATCH_INTERVAL_MS = 5_000;
/** How long a probe may take to be accepted. */
export const PROBE_TIMEOUT_MS = 3_000;
/** The longest wait between checks, after restarts that did not help. */
export const MAX_WATCH_INTERVAL_MS = 5 * 60_000;

/**
 * Ports a probe leaves from: the part of the IANA dynamic range inside
 * Linux's default ephemeral range, where no service listens and the kernel
 * picks ports for outgoing connections. A port taken makes the probe fail
 * at once, which is no strike.
 */
const PROBE_PORTS = { low: 49_152, high: 60_999 } as const;

/** How many finished probes are still recognised when accepted late. */
const RECENT_PROBES = 8;

/** What one probe found. */
export type ProbeOutcome =
  /** The listener accepted it. */
  | "accepted"
  /** Connected (the kernel completed the handshake) but never accepted. */
  | "not_accepted"
  /** The handshake did not complete in time (a full listen queue drops it). */
  | "no_answer"
  /** It failed at once: proves nothing (EMFILE, ECONNREFUSED, port taken). */
  | "unavailable";

/** Options of {@linkcode ListenerWatch}. */
export interface ListenerWatchOptions {
  /** The address the listener was asked to listen on (a wildcard is probed on loopback). */
  host: string;
  /** The bound port. */
  port: number;
  /** Whether the listener is listening (false after a failed attempt to listen again). */
  listening: () => boolean;
  /** Closes the listener and listens again on the same address. */
  listenAgain: () => Promise<void>;
  /** The listener listens again; `reason` is what was found. */
  onRestart: (reason: string) => void;
  /** Listening again failed; the next check tries again. */
  onError: (error: string) => void;
  /** Default {@linkcode WATCH_INTERVAL_MS}. */
  intervalMs?: number;
  /** Default {@linkcode PROBE_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** One probe; default a TCP connection to the listener (tests replace it). */
  probe?: () => Promise<ProbeOutcome>;
}

/** Checks one listener and listens again when it stopped accepting. */
export class ListenerWatch {
  #options: ListenerWatchOptions;
  #intervalMs: number;
  #timeoutMs: number;
  /** Probes in flight, by `address|port` of their side: called when accepted. */
  #pending = new Map<string, () => void>();
  /** Finished probes, recognised (and dropped) when the listener accepts them late. */
  #recent: string[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = true;
  /** Restarts for no answer, one after the other. */
  #unanswered = 0;

  /** Creates a watch; {@linkcode ListenerWatch.start} starts it. */
  constructor(options: ListenerWatchOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? WATCH_INTERVAL_MS;
    this.#timeoutMs = options.timeoutMs ?? PROBE_TIMEOUT_MS;
  }

  /**
   * Whether a socket the listener just accepted is one of this watch's
   * probes: then it counts as accepted, and the caller drops it.
   */
  claim(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): boolean {
    if (this.#pending.size === 0 && this.#recent.length === 0) return false;
    const key = probeKey(socket.remoteAddress ?? "", socket.remotePort ?? 0);
    const seen = this.#pending.get(key);
    if (seen) {
      seen();
      return true;
    }
    return this.#recent.includes(key);
  }

  /** Checks every interval from now on. */
  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  /** Stops checking; a probe in flight ends at its timeout. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** One check: probes (twice on a strike) and listens again when they fail. */
  async check(): Promise<void> {
    if (!this.#options.listening()) {
      this.#unanswered = 0;
      await this.#restart("not_listening");
      return;
    }
    let outcome = await this.#probe();
    // A second look at once: one accept that came late is not a stopped listener.
    if (isStrike(outcome) && !this.#stopped) outcome = await this.#probe();
    if (this.#stopped) return;
    this.#unanswered = outcome === "no_answer" ? this.#unanswered + 1 : 0;
    if (isStrike(outcome)) await this.#restart(outcome);
  }

  /** The wait before the next check, longer after restarts for no answer. */
  get nextIntervalMs(): number {
    return Math.min(this.#intervalMs * 2 ** this.#unanswered, MAX_WATCH_INTERVAL_MS);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      // Never an unhandled rejection (it would end the process on Deno).
      this.check()
        .catch((err) => this.#options.onError(err instanceof Error ? err.message : String(err)))
        .finally(() => this.#schedule());
    }, this.nextIntervalMs);
    // A watch never keeps the process alive.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async #restart(reason: string): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#options.listenAgain();
      this.#options.onRestart(reason);
    } catch (err) {
      this.#options.onError(err instanceof Error ? err.message : String(err));
    }
  }

  #probe(): Promise<ProbeOutcome> {
    return this.#options.probe ? this.#options.probe() : this.#tcpProbe();
  }

  #tcpProbe(): Promise<ProbeOutcome> {
    const host = probeHost(this.#options.host);
    const localPort = PROBE_PORTS.low +
      Math.floor(Math.random() * (PROBE_PORTS.high - PROBE_PORTS.low + 1));
    const key = probeKey(host, localPort);
    return new Promise((resolve) => {
      let socket: Socket | undefined;
      let connected = false;
      let done = false;
      const finish = (outcome: ProbeOutcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#pending.delete(key);
        this.#recent.push(key);
        if (this.#recent.length > RECENT_PROBES) this.#recent.shift();
        socket?.destroy();
        resolve(outcome);
      };
      const timer = setTimeout(
        () => finish(connected ? "not_accepted" : "no_answer"),
        this.#timeoutMs,
      );
      this.#pending.set(key, () => finish("accepted"));
      try {
        // From the listener's own address, so that it can be reached over loopback.
        socket = connect({ host, port: this.#options.port, localAddress: host, localPort });
      } catch {
        finish("unavailable");
        return;
      }
      socket.on("connect", () => connected = true);
      socket.on("error", () => finish(connected ? "not_accepted" : "unavailable"));
    });
  }
}

function isStrike(outcome: ProbeOutcome): boolean {
  return outcome === "not_accepted" || outcome === "no_answer";
}

/** Where a listener on `host` is reached from this machine: a wildcard on loopback. */
export function probeHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::" || host === "") return "::1";
  return host;
}

function probeKey(address: string, port: number): string {
  // An IPv4 peer of a dual-stack listener shows as ::ffff:a.b.c.d.
  const plain = address.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
  return `${plain}|${port}`;
}
