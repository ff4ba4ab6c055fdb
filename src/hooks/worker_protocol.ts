/**
 * The rules a worker's frames must keep: what may come when, and what a
 * call in flight may ask for. A worker that breaks one is ended (see
 * `worker.ts`), as a forged or runaway frame could otherwise keep it
 * talking for ever.
 *
 * @module
 */

import { MAX_SHARED_PENDING } from "./shared_state.ts";
import type { WorkerCall } from "./worker_contract.ts";

/** A call sent to the worker and not yet answered. */
export interface InFlight {
  call: WorkerCall;
  chunks?: AsyncIterator<Uint8Array>;
  /** A pull is being answered: the worker may not ask again until it is. */
  pulling?: boolean;
  /** Shared-state requests waiting for their answer. */
  shared?: number;
  /** The end of the message was sent: the worker has nothing more to ask for. */
  ended?: boolean;
}

/** The fields of a frame's JSON (none when it is not an object). */
export function messageFields(message: unknown): Record<string, unknown> {
  return (typeof message === "object" && message !== null ? message : {}) as Record<
    string,
    unknown
  >;
}

/**
 * Why message `m` of call `id` breaks the protocol whatever call it
 * names, or undefined; `ready` is true once the hook has loaded.
 */
export function turnViolation(
  id: number,
  m: Record<string, unknown>,
  ready: boolean,
): string | undefined {
  // Every frame answers something Postern asked: start-up (ready or a
  // load error, once, as call 0), or a call in flight (a pull, then its
  // result). Anything else is out of turn and ends the worker: with no
  // call in flight no timeout would ever stop a worker that keeps talking.
  if ((m.t === "ready" || m.t === "load_error") && (ready || id !== 0)) {
    return `${m.t} out of turn (call ${id})`;
  }
  // The bootstrap sends errors as text. Anything else (a nested array of
  // any depth, which JSON.parse takes but String() overflows the stack
  // on) is forged.
  if ((m.t === "load_error" || (m.t === "result" && m.ok !== true)) && !isText(m.error)) {
    return `a ${m.t} whose error is not text (call ${id})`;
  }
  return undefined;
}

/** Why a pull for call `id`, which is in flight as `entry`, breaks the protocol, or undefined. */
export function pullViolation(id: number, entry: InFlight): string | undefined {
  if (entry.chunks !== undefined && !entry.pulling && !entry.ended) return undefined;
  // A pull after the end would be answered with the end again, a
  // round trip as fast as the hook asks, until the call's timeout.
  return entry.pulling
    ? `a pull for call ${id} before the last one was answered`
    : entry.ended
    ? `a pull for call ${id} after its message ended`
    : `a pull for call ${id}, which has no message`;
}

/** Why a shared-state request of call `id` (in flight as `entry`) breaks the protocol, or undefined. */
export function sharedViolation(id: number, entry: InFlight): string | undefined {
  return (entry.shared ?? 0) >= MAX_SHARED_PENDING
    ? `more than ${MAX_SHARED_PENDING} shared-state requests of call ${id}`
    : undefined;
}

/** The protocol error of a message whose type `t` the worker may not send. */
export function unknownMessage(t: unknown): string {
  return `unknown message ${typeof t === "string" ? JSON.stringify(t.slice(0, 40)) : typeof t}`;
}

/** Closes a call's message source, whatever state it is in. */
export function closeChunks(chunks: AsyncIterator<Uint8Array> | undefined): void {
  chunks?.return?.().catch(() => {});
}

function isText(value: unknown): value is string {
  return typeof value === "string";
}
