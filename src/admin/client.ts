/**
 * The command-line side of the admin API: `postern status`, `postern
 * reload` and `postern queue …` call the running server with the address
 * it recorded in `<data>/run/admin.json` (or `admin.listen`) and the token
 * from its token file. The token goes only to a server that first proves
 * it holds the token too: after a crash, `admin.json` names a port anyone
 * may have taken since. Everything printed from the server has its control
 * characters escaped (terminal.ts).
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../config/mod.ts";
import { ADMIN_STATE_FILE } from "./server.ts";
import { printable, printableJson } from "./terminal.ts";
import { adminProof, randomBase64url, sameToken, tokenProblem } from "./token.ts";

/** What one command printed and its exit status. */
export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `postern status|reload|queue …` (the words after `postern`). */
export async function runAdminCommand(config: Config, words: string[]): Promise<CliResult> {
  const [command, sub, id] = words;
  let request: { method: string; path: string; body?: unknown };
  switch (command) {
    case "status":
      request = { method: "GET", path: sub === "--cluster" ? "/cluster" : "/status" };
      break;
    case "reload":
      request = { method: "POST", path: "/reload" };
      break;
    case "queue": {
      const needsId = ["show", "retry", "bounce", "rm", "hold", "release"];
      if (sub === "ls" || sub === undefined) {
        request = { method: "GET", path: "/queue?limit=1000" };
      } else if (needsId.includes(sub) && id !== undefined) {
        const path = `/queue/${encodeURIComponent(id)}`;
        request = sub === "show"
          ? { method: "GET", path }
          : sub === "rm"
          ? { method: "DELETE", path }
          : { method: "POST", path: `${path}/${sub}`, ...(sub === "bounce" ? { body: {} } : {}) };
      } else {
        return usage(`usage: postern queue ls | postern queue ${needsId.join("|")} ID`);
      }
      break;
    }
    default:
      return usage(`unknown admin command "${command}"`);
  }

  let target: Target;
  try {
    target = await locate(config);
    await proveServer(target);
  } catch (err) {
    return failure((err as Error).message);
  }
  let response: Response;
  try {
    response = await fetch(`${target.base}${request.path}`, {
      method: request.method,
      // The server that proved itself never redirects: the token stays here.
      redirect: "error",
      headers: {
        authorization: `Bearer ${target.token}`,
        ...(request.body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
    });
  } catch (err) {
    return failure(
      `the server's admin API at ${target.base} does not answer (${
        (err as Error).message
      }); is postern running?`,
    );
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) return failure(String(body.error ?? response.statusText));
  if (command === "queue" && (sub === "ls" || sub === undefined)) {
    return { status: 0, stdout: queueTable(body.items ?? []), stderr: "" };
  }
  if (command === "status" && sub === "--cluster") {
    return { status: 0, stdout: nodeTable(body), stderr: "" };
  }
  return { status: 0, stdout: printableJson(body) + "\n", stderr: "" };
}

/** Exit status 1 with `message` on stderr, escaped: it may quote the server. */
function failure(message: string): CliResult {
  return { status: 1, stdout: "", stderr: `postern: ${printable(message)}\n` };
}

/** A table cell from a server's value, whatever its type, safe to print. */
function cell(value: unknown): string {
  return printable(String(value ?? ""));
}

interface ClusterView {
  self: { node: string; server: string; state: string };
  nodes: Array<{
    name: string;
    state: string;
    version: string;
    queue_size: number;
    policy_epoch: number;
    heartbeat_at: string;
  }>;
}

/** `postern status --cluster`: this node's link, then one line per live node. */
function nodeTable(body: ClusterView): string {
  const head = `node ${cell(body.self.node)}: ${cell(body.self.state)} counts, server ${
    cell(body.self.server)
  }\n`;
  const rows = [["NODE", "VERSION", "QUEUE", "EPOCH", "HEARTBEAT"]];
  for (const node of body.nodes) {
    rows.push([
      cell(node.name),
      cell(node.version),
      cell(node.queue_size),
      cell(node.policy_epoch),
      cell(node.heartbeat_at),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return head + rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd())
    .join("\n") +
    "\n";
}

function usage(message: string): CliResult {
  return { status: 2, stdout: "", stderr: `postern: ${message}\n` };
}

/** Where the admin API should be, and the token to use there. */
interface Target {
  base: string;
  token: string;
  /** Where the address came from: the state file, or `admin.listen`. */
  source: string;
}

/** The address and token of the running server's admin API. */
async function locate(config: Config): Promise<Target> {
  let address = config.admin.listen;
  const stateFile = join(config.dataDir, "run", ADMIN_STATE_FILE);
  let source = "admin.listen";
  try {
    const state = JSON.parse(await readFile(stateFile, "utf8"));
    if (typeof state.address === "string") {
      address = state.address;
      source = stateFile;
    }
  } catch {
    // Not running from this data directory: the configured address.
  }
  if (address === undefined) throw new Error("the admin API is off (admin.listen: off)");
  let token: string;
  try {
    token = (await readFile(config.admin.tokenFile, "utf8")).trim();
  } catch (err) {
    throw new Error(
      `cannot read the admin token ${config.admin.tokenFile}: ${(err as Error).message}`,
    );
  }
  // The server refuses such a token at start; the file may have changed since.
  const problem = tokenProblem(token, config.admin.tokenFile);
  if (problem) throw new Error(problem);
  return { base: `http://${address}`, token, source };
}

/**
 * Asks whoever listens at the target to prove it holds the token (an HMAC
 * of a fresh challenge, see adminProof) before the token is sent there.
 *
 * @throws {Error} when nothing answers, or something answers without the proof.
 */
async function proveServer(target: Target): Promise<void> {
  const challenge = randomBase64url();
  let response: Response;
  try {
    response = await fetch(`${target.base}/health?challenge=${challenge}`, { redirect: "manual" });
  } catch (err) {
    throw new Error(
      `the server's admin API at ${target.base} does not answer (${
        (err as Error).message
      }); is postern running?`,
    );
  }
  const body = await response.json().catch(() => ({}));
  const proof = typeof body?.proof === "string" ? body.proof : "";
  if (!response.ok || !sameToken(proof, await adminProof(target.token, challenge))) {
    throw new Error(
      `what answers at ${target.base} (the address from ${target.source}) does not prove it ` +
        `is this server, so the token was not sent: is postern running, or does another ` +
        `program hold that port?`,
    );
  }
}

interface QueueRow {
  id: string;
  age_seconds: number;
  state: string;
  from: string;
  recipients: Array<{ address: string; status: string; last_error?: string }>;
}

function queueTable(items: QueueRow[]): string {
  if (items.length === 0) return "queue is empty\n";
  const rows = [["ID", "AGE", "STATE", "FROM", "TO (PENDING)", "LAST ERROR"]];
  for (const item of items) {
    const pending = item.recipients.filter((r) => r.status === "pending");
    rows.push([
      cell(item.id),
      age(Number(item.age_seconds)),
      cell(item.state),
      `<${cell(item.from)}>`,
      pending.map((r) => cell(r.address)).join(","),
      // Cut before escaping, so that no escape is cut in two.
      cell((pending.find((r) => r.last_error)?.last_error ?? "").slice(0, 60)),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd())
    .join("\n") + "\n";
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}
