/**
 * `postern hook run EVENT --input FILE [--message FILE]`: runs one hook
 * exactly as the server would (same discovery, same sandbox, same result
 * checks) and reports what the server would do with its answer.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import {
  AliasInputSchema,
  HOOK_POINTS,
  type HookPoint,
  PostDataInputSchema,
  type PreDeliveryAttemptInput,
  PreDeliveryAttemptInputSchema,
} from "../../hooks/mod.ts";
import { Counters, type Logger } from "../log/mod.ts";
import { HOOK_ERROR_TEXT, preDeliveryDecision } from "../outbound/pre_delivery.ts";
import type { HooksConfig } from "./runner.ts";
import type { EmbeddedDeno } from "./hook_runtime.ts";
import { HookRunner } from "./runner.ts";
import { aliasHookTargets } from "./alias_targets.ts";

/** What `hook run` needs. */
export interface RunOnceOptions {
  configDir: string | undefined;
  hooks: HooksConfig;
  event: string;
  /** JSON file with the hook's input (see `hooks/mod.ts`). */
  inputPath: string;
  /** The message, for post-data. */
  messagePath: string | undefined;
  logger: Logger;
  env: (name: string) => string | undefined;
  execPath: string;
  /** The binary's own deno, extracted into the server's data folder. */
  embeddedDeno?: EmbeddedDeno | undefined;
}

/** The report printed, and the exit status: 0 when the hook answered, 1 when it failed. */
export interface RunOnceReport {
  status: 0 | 1 | 2;
  report: Record<string, unknown>;
}

/** Runs one hook once. */
export async function runHookOnce(options: RunOnceOptions): Promise<RunOnceReport> {
  if (!(HOOK_POINTS as readonly string[]).includes(options.event)) {
    return usage(`unknown hook "${options.event}"; hooks are ${HOOK_POINTS.join(", ")}`);
  }
  const event = options.event as HookPoint;
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(options.inputPath, "utf8"));
  } catch (err) {
    return usage(`cannot read input "${options.inputPath}": ${describe(err)}`);
  }
  const schema = event === "post-data"
    ? PostDataInputSchema
    : event === "pre-delivery-attempt"
    ? PreDeliveryAttemptInputSchema
    : AliasInputSchema;
  const input = v.safeParse(schema, raw);
  if (!input.success) {
    const issue = input.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".") || "(input)";
    return usage(`invalid input: ${path}: ${issue.message}`);
  }
  if (event === "post-data" && options.messagePath === undefined) {
    return usage("post-data needs --message FILE");
  }

  // The worker bootstrap goes to a scratch directory, not the data
  // directory of a server that may be running.
  const scratch = await mkdtemp(join(tmpdir(), "postern-hook-"));
  let runner: HookRunner | undefined;
  try {
    runner = await HookRunner.start({
      configDir: options.configDir,
      dataDir: scratch,
      config: options.hooks,
      logger: options.logger,
      counters: new Counters(),
      env: options.env,
      execPath: options.execPath,
      embeddedDeno: options.embeddedDeno,
      watch: false,
    });
    if (!runner.has(event)) {
      return usage(`no ${event} hook in ${runner.hooksDir}`);
    }
    if (event === "post-data") {
      const verdict = await runner.postData(
        input.output as v.InferOutput<typeof PostDataInputSchema>,
        () => createReadStream(options.messagePath!),
      );
      if (!verdict) return usage("no post-data hook");
      if (verdict.kind === "accept") {
        return {
          status: 0,
          report: {
            hook: event,
            verdict: "accept",
            headers: verdict.headers.split("\r\n").filter((l) => l !== ""),
            dropped: verdict.dropped,
          },
        };
      }
      const failed = verdict.cause !== "rejected" && verdict.cause !== "deferred";
      return {
        status: failed ? 1 : 0,
        report: {
          hook: event,
          verdict: verdict.permanent ? "reject" : "defer",
          reply: verdict.permanent ? `554 5.7.1 ${verdict.text}` : `451 4.3.0 ${verdict.text}`,
          cause: verdict.cause,
        },
      };
    }
    if (event === "pre-delivery-attempt") {
      const attempt = input.output as PreDeliveryAttemptInput;
      const decision = preDeliveryDecision((await runner.preDeliveryAttempt(attempt))!);
      return decision.kind === "error"
        ? {
          status: 1,
          report: { hook: event, error: decision.error, outcome: `deferred: ${HOOK_ERROR_TEXT}` },
        }
        : { status: 0, report: { hook: event, recipient: attempt.recipient, decision } };
    }
    const address = (input.output as { address: string }).address;
    if (event === "alias-resolve") {
      const verdict = (await runner.aliasResolve(address))!;
      // The same checks as at delivery: output that parses, pipes the hook may run.
      const checked = aliasHookTargets({
        resolve: () => Promise.resolve(verdict),
        runGrants: () => ({
          run: options.hooks.points["alias-resolve"].allow.run,
          path: options.env("PATH"),
          cwd: options.configDir ?? ".",
        }),
        logger: options.logger,
        counters: new Counters(),
      })(address);
      const error = await checked.then(() => undefined, (err: unknown) => describe(err));
      return verdict.ok && error === undefined
        ? { status: 0, report: { hook: event, address, targets: verdict.rhs } }
        : {
          status: 1,
          report: {
            hook: event,
            address,
            error: verdict.ok ? error : verdict.cause,
            outcome: "delivery deferred",
          },
        };
    }
    const verdict = (await runner.aliasExists(address))!;
    return {
      status: verdict.cause ? 1 : 0,
      report: {
        hook: event,
        address,
        exists: verdict.exists,
        ...(verdict.cause ? { error: verdict.cause } : {}),
      },
    };
  } catch (err) {
    return { status: 1, report: { hook: event, error: describe(err) } };
  } finally {
    runner?.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

function usage(error: string): RunOnceReport {
  return { status: 2, report: { error } };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
