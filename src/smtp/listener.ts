/**
 * Starts smtp-server listeners with Postern's settings and handlers.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import type { TlsMaterial } from "../tls/mod.ts";
import type {
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerSession,
} from "smtp-server";
import { netServerStopsAfterAcceptError } from "../runtime/mod.ts";
import { complete, completeLogin } from "./adapter.ts";
import { ListenerWatch } from "./listener_watch.ts";
import { PosternSmtpServer } from "./server_class.ts";
import type { Intake } from "./session.ts";

/** Listener settings. */
export interface ListenerOptions {
  hostname: string;
  listen: readonly string[];
  greetingDelayMs: number;
  maxMessageSize: number;
  idleTimeoutMs: number;
  commandTimeoutMs: number;
  /** Bytes per second a message must arrive at, at least. */
  minDataRate: number;
  /** Refused or bad commands that end a session with 421 4.7.0; 0: no limit. */
  hardErrorLimit: number;
  maxCommandLength: number;
  tls: TlsMaterial;
  /** Submission listeners, with AUTH: STARTTLS first, or implicit TLS. */
  submission?: { listen: readonly string[]; listenTls: readonly string[] };
  /**
   * A listener found not accepting connections listens again (for the mail
   * log). Listeners are watched where the runtime's server can stop for
   * good (Deno; listener_watch.ts).
   */
  onRestart?: (address: string, reason: string) => void;
}

/** Listener settings that a policy reload may change. */
export type LiveListenerSettings = Omit<
  ListenerOptions,
  "hostname" | "listen" | "tls" | "submission" | "onRestart"
>;

/** Running SMTP listeners. */
export interface SmtpListeners {
  /** The bound addresses as `host:port` (the real port when 0 was asked). */
  addresses: string[];
  /**
   * Applies new settings to the next connections (a policy reload);
   * sessions in progress keep theirs.
   */
  update(settings: LiveListenerSettings): void;
  /** Serves new certificates from the next TLS handshake on. */
  updateTls(tls: TlsMaterial): void;
  /** Stops accepting; open sessions get smtp-server's close handling. */
  close(): Promise<void>;
}

/** Splits `host:port` and `[v6]:port`. */
export function splitHostPort(address: string): { host: string; port: number } {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  if (!match) throw new TypeError(`Cannot parse listen address "${address}"`);
  return { host: match[1]!, port: Number(match[2]) };
}

/** Starts one listener per address, all sharing `intake`. */
export async function startListeners(
  options: ListenerOptions,
  intake: Intake,
  logger: Logger,
): Promise<SmtpListeners> {
  const servers: PosternSmtpServer[] = [];
  const watches: ListenerWatch[] = [];
  const addresses: string[] = [];
  const unexpected = (err: unknown) =>
    logger.error("unexpected error in an SMTP handler", {
      error: err instanceof Error ? err.stack ?? err.message : String(err),
    });
  const listeners = [
    ...options.listen.map((address) => ({ address, kind: "mx" as const })),
    ...(options.submission?.listen ?? []).map((address) => ({
      address,
      kind: "submission" as const,
    })),
    ...(options.submission?.listenTls ?? []).map((address) => ({
      address,
      kind: "submission_tls" as const,
    })),
  ];
  for (const { address, kind } of listeners) {
    // Port 25 never offers AUTH. Submission offers PLAIN and LOGIN only
    // once the session is encrypted (RFC 4954 section 4: no plain-text
    // passwords in the clear), and requires AUTH before MAIL (530 5.7.0).
    const auth = kind === "mx" ? { disabledCommands: ["AUTH"], authOptional: true } : {
      authMethods: ["PLAIN", "LOGIN"],
      allowInsecureAuth: false,
      authOptional: false,
      onAuth: (
        auth: SMTPServerAuthentication,
        session: SMTPServerSession,
        cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
      ) => completeLogin(() => intake.login(auth, session), cb, unexpected),
    };
    const server = new PosternSmtpServer({
      ...(kind === "submission_tls" ? { secure: true } : {}),
      name: options.hostname,
      banner: "Postern",
      greetingDelayMs: options.greetingDelayMs,
      commandTimeoutMs: options.commandTimeoutMs,
      minDataRate: options.minDataRate,
      hardErrorLimit: options.hardErrorLimit,
      events: intake,
      size: options.maxMessageSize,
      socketTimeout: options.idleTimeoutMs,
      maxCommandLength: options.maxCommandLength,
      key: options.tls.key,
      cert: options.tls.cert,
      ...(options.tls.sniCallback ? { SNICallback: options.tls.sniCallback } : {}),
      ...auth,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      hideREQUIRETLS: true,
      disableReverseLookup: true,
      logger: false,
      // Sessions still open at shutdown get a 421 after this long.
      closeTimeout: 10_000,
      onConnect: (session, cb) => complete(() => intake.connect(session), cb, unexpected),
      onMailFrom: (address, session, cb) =>
        complete(() => intake.mailFrom(address, session), cb, unexpected),
      onRcptTo: (address, session, cb) =>
        complete(() => intake.rcptTo(address, session), cb, unexpected),
      onData: (stream, session, cb) => complete(() => intake.data(stream, session), cb, unexpected),
      onClose: (session) => intake.close(session),
    });
    server.on("error", (err: Error) => logger.warn("smtp error", { error: err.message }));
    const { host, port } = splitHostPort(address);
    await new Promise<void>((resolve, reject) => {
      server.server.once("error", reject);
      server.listen(port, host, () => {
        server.server.off("error", reject);
        resolve();
      });
    });
    const bound = server.server.address();
    const boundPort = typeof bound === "object" && bound ? bound.port : port;
    const boundAddress = host.includes(":") ? `[${host}]:${boundPort}` : `${host}:${boundPort}`;
    addresses.push(boundAddress);
    servers.push(server);
    if (netServerStopsAfterAcceptError) {
      const watch = watchListener(server, host, boundPort, boundAddress, options, logger);
      server.probes = watch;
      watches.push(watch);
    }
  }
  return {
    addresses,
    update(settings) {
      for (const server of servers) {
        // smtp-server reads these from its options object when it uses them.
        server.options.size = settings.maxMessageSize;
        server.options.socketTimeout = settings.idleTimeoutMs;
        server.options.maxCommandLength = settings.maxCommandLength;
        server.setConnectionSettings({
          greetingDelayMs: settings.greetingDelayMs,
          commandTimeoutMs: settings.commandTimeoutMs,
          minDataRate: settings.minDataRate,
          hardErrorLimit: settings.hardErrorLimit,
        });
      }
    },
    updateTls(tls) {
      for (const server of servers) {
        // New TLS contexts serve the next STARTTLS; a renewed certificate
        // needs no restart. SNICallback is always passed, so that one left
        // from an older set of certificates cannot linger.
        server.updateSecureContext(
          {
            key: tls.key,
            cert: tls.cert,
            SNICallback: tls.sniCallback,
          } as Parameters<typeof server.updateSecureContext>[0],
        );
      }
    },
    close: () => {
      for (const watch of watches) watch.stop();
      return Promise.all(
        servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      ).then(() => {});
    },
  };
}

/** A started watch of one listener (listener_watch.ts), which logs what it does. */
function watchListener(
  server: PosternSmtpServer,
  host: string,
  port: number,
  address: string,
  options: ListenerOptions,
  logger: Logger,
): ListenerWatch {
  const watch = new ListenerWatch({
    host,
    port,
    listening: () => server.server.listening,
    // The same address again: the stopped listener's socket is closed
    // first, sessions in progress go on.
    listenAgain: () =>
      new Promise<void>((resolve, reject) => {
        if (server.server.listening) server.server.close();
        server.server.once("error", reject);
        server.server.listen(port, host, () => {
          server.server.off("error", reject);
          resolve();
        });
      }),
    onRestart: (reason) => {
      logger.warn("SMTP listener stopped accepting connections; it listens again", {
        addr: address,
        reason,
        cause: "the runtime's node:net server stops accepting for good after an accept " +
          "fails (EMFILE: out of descriptors), without an error event",
      });
      options.onRestart?.(address, reason);
    },
    onError: (error) =>
      logger.error("SMTP listener cannot listen again; retrying", { addr: address, error }),
  });
  watch.start();
  return watch;
}
