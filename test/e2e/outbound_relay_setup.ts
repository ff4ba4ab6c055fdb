/**
 * What the outbound end-to-end tests beyond plain MX lookups share
 * (outbound_smarthost_test.ts, outbound_limits_test.ts,
 * outbound_mta_sts_test.ts): two users on two domains, submission as either,
 * and a Postern started on a fresh config directory with the settings every
 * server there shares.
 *
 * @module
 */

import { hashPassword } from "../../src/users/mod.ts";
import type { TestDnsServer } from "../support/dns_server.ts";
import {
  outboundBaseYaml,
  queuedId,
  type RunResult,
  type Server,
  startServer,
  submitMail,
  tempDir,
  writeTree,
} from "./harness.ts";

/** The users of both domains and their passwords. */
const USERS = {
  "alice@example.test": "pw-alice-1",
  "bob@second.test": "pw-bob-2",
} as const;

/** Submits one message over STARTTLS with AUTH PLAIN as `from` (a user of {@linkcode USERS}). */
export function submit(port: number, from: keyof typeof USERS, to: string): Promise<RunResult> {
  return submitMail(port, { user: from, password: USERS[from] }, from, [to]);
}

/** The queue id the submission got. */
export const queued = queuedId;

/** Config files: postern.yaml from `yaml` lines, plus both users' password files. */
async function configFiles(
  yaml: string[],
  extra: Record<string, string> = {},
): Promise<Record<string, string>> {
  return {
    "postern.yaml": [...yaml, ""].join("\n"),
    "domains/example.test/users": `alice ${await hashPassword(USERS["alice@example.test"])}\n`,
    "domains/second.test/users": `bob ${await hashPassword(USERS["bob@second.test"])}\n`,
    ...extra,
  };
}

/** Starts Postern on a new config directory: postern.yaml from `yaml` lines, the users, `extra`. */
export async function startWith(
  yaml: string[],
  extra: Record<string, string> = {},
  env?: Record<string, string>,
): Promise<Server> {
  const configDir = await tempDir("postern-config-");
  await writeTree(configDir, await configFiles(yaml, extra));
  return await startServer({ configDir, ...(env ? { env } : {}) });
}

/** The settings every server here shares: submission, test DNS, fast retries. */
export function commonYaml(submission: number, dns: TestDnsServer): string[] {
  return outboundBaseYaml(submission, dns.address);
}
