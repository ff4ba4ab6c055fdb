/**
 * `postern serve`: the daemon's life from the command line. It opens the
 * mail log, starts the server, and stops it on SIGTERM or SIGINT; SIGHUP
 * reopens the mail log and reaches whoever subscribed to it.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import { HookSetupError } from "../hooks/mod.ts";
import { BatchedSink, FileSink, Logger } from "../log/mod.ts";
import * as runtime from "../runtime/mod.ts";
import { serve } from "../serve.ts";

/**
 * Serves `config` until a signal to stop, reloading with `load`; returns
 * the exit status (1 when the server could not start).
 */
export async function runDaemon(config: Config, load: () => Promise<Config>): Promise<number> {
  const logger = new Logger(config.log.level, runtime.writeStderr);
  // SIGHUP's default action ends the process. One handler for the whole
  // life of the daemon (start-up and shutdown included) reopens the mail
  // log and passes the signal on to whoever subscribed (the reloader, the
  // hook's log); with nobody, it is ignored.
  const hangups = new Set<() => void>();
  const mailFile = config.log.mailFile === undefined
    ? undefined
    : new FileSink(config.log.mailFile);
  // Mail log lines are written once per turn of the event loop (see
  // BatchedSink); what is pending when the process ends is written then.
  const mailSink = new BatchedSink(mailFile?.write ?? runtime.writeStdout);
  runtime.onExit(() => mailSink.flush());
  runtime.onSignal("SIGHUP", () => {
    mailSink.flush();
    mailFile?.reopen();
    for (const handler of hangups) handler();
  });
  let server;
  try {
    server = await serve(config, logger, mailSink.write, {
      reload: config.configDir === undefined ? undefined : load,
      onHangup: (handler) => {
        hangups.add(handler);
        return () => hangups.delete(handler);
      },
    });
  } catch (err) {
    if (err instanceof HookSetupError) {
      runtime.writeStderr(`postern: hook error:\n${err.message}\n`);
      return 1;
    }
    // Anything else that stops start-up (an address in use, an unreadable
    // token file) is reported plainly, without a stack trace.
    runtime.writeStderr(`postern: cannot start: ${err instanceof Error ? err.message : err}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    runtime.onSignal("SIGTERM", stop);
    runtime.onSignal("SIGINT", stop);
  });
  logger.info("shutting down");
  await server.stop();
  mailSink.flush();
  await mailFile?.close();
  return 0;
}
