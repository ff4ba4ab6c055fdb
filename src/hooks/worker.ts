/**
 * One module-hook worker: a sandboxed deno process that loads the hook once
 * and then serves calls over the framed channel, several at a time. Module
 * state lives as long as the process.
 *
 * @module
 */

import { type Child, startChild } from "../runtime/mod.ts";
import {
  encodeFrame,
  encodeJsonFrame,
  type Frame,
  FrameBatcher,
  FrameDecoder,
  FrameKind,
  parseJsonPayload,
} from "./frames.ts";
import type { OutputLimits } from "./output_budget.ts";
import type { CallFailure, WorkerCall, WorkerEvents } from "./worker_contract.ts";
import { WorkerOutput } from "./worker_output.ts";
import {
  closeChunks,
  type InFlight,
  messageFields,
  pullViolation,
  sharedViolation,
  turnViolation,
  unknownMessage,
} from "./worker_protocol.ts";

export type { CallFailure, CallOutcome, WorkerCall, WorkerEvents } from "./worker_contract.ts";

/** A running worker process. */
export class HookWorker {
  readonly startedAt: number;
  #child: Child;
  #events: WorkerEvents;
  #decoder = new FrameDecoder();
  #out: FrameBatcher;
  #inFlight = new Map<number, InFlight>();
  /** Calls given up after a timeout: their late answers are expected, and ignored. */
  #abandoned = new Set<number>();
  #queued: Array<{ id: number; call: WorkerCall }> = [];
  #nextId = 1;
  #ready = false;
  #dead = false;
  #retiring = false;
  #stopping = false;
  /** How calls still in flight fail when the process ends. */
  #failure: CallFailure = "crash";
  /** Why Postern ended the worker, for exit details. */
  #notes = "";
  #output: WorkerOutput;

  /**
   * Starts `argv` (deno with the sandbox flags, the bootstrap and the hook);
   * `outputLimits` is the budget of what it prints.
   */
  constructor(
    argv: string[],
    env: Record<string, string>,
    cwd: string,
    events: WorkerEvents,
    outputLimits: OutputLimits,
  ) {
    this.startedAt = Date.now();
    this.#events = events;
    this.#output = new WorkerOutput(outputLimits, {
      line: (line) => events.output(this, line),
      over: () => events.outputOver(this),
      dropped: (dropped, ended) => events.outputDropped(this, dropped, ended),
      excess: (cause) => this.#outputExcess(cause),
    });
    this.#child = startChild({ argv, env, cwd });
    this.#out = new FrameBatcher((bytes) => this.#child.write(bytes));
    this.#child.onChannel((chunk) => this.#onChannel(chunk));
    this.#child.onStdout((chunk) => this.#output.push(chunk, "stdout"));
    this.#child.onStderr((chunk) => this.#output.push(chunk, "stderr"));
    this.#child.onExit((exit) => {
      const detail = exit.error ??
        (exit.signal ? `killed by ${exit.signal}` : `exited with status ${exit.code}`);
      this.#die(detail);
    });
  }

  /** Process ID, for log lines. */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** True once the hook module has loaded. */
  get loaded(): boolean {
    return this.#ready;
  }

  /** Calls started and not finished, plus calls waiting for start-up. */
  get load(): number {
    return this.#inFlight.size + this.#queued.length;
  }

  /** True when the worker takes no new calls. */
  get retiring(): boolean {
    return this.#retiring || this.#dead;
  }

  /** Starts a call, or queues it until the hook has loaded. */
  send(call: WorkerCall): number {
    const id = this.#nextId++;
    if (this.#dead) {
      call.settle({ ok: false, failure: "crash", error: "the worker has exited" });
    } else if (!this.#ready) {
      this.#queued.push({ id, call });
    } else {
      this.#start(id, call);
    }
    this.#updateBusy();
    return id;
  }

  /**
   * Forgets a call that ran out of time and retires the worker: the hook
   * may be stuck, so it gets no new calls and ends once the others finish.
   */
  abandon(id: number): void {
    const entry = this.#inFlight.get(id);
    if (entry) this.#abandoned.add(id);
    this.#inFlight.delete(id);
    this.#queued = this.#queued.filter((q) => q.id !== id);
    closeChunks(entry?.chunks);
    this.#updateBusy();
    this.retire();
  }

  /** Takes no new calls; ends the process when nothing is in flight. */
  retire(): void {
    this.#retiring = true;
    if (this.load === 0) this.stop();
  }

  /** Ends the process now; calls in flight fail. */
  stop(): void {
    this.#stopping = true;
    this.#retiring = true;
    this.#child.kill();
  }

  /** Ends the process now because of `reason`, which calls in flight report. */
  terminate(reason: string): void {
    this.#notes += `\n${reason}`;
    this.stop();
  }

  #start(id: number, call: WorkerCall): void {
    const entry: InFlight = { call };
    if (call.message) entry.chunks = call.message[Symbol.asyncIterator]();
    this.#inFlight.set(id, entry);
    this.#write(encodeJsonFrame(id, { t: "call", input: call.input, message: !!call.message }));
  }

  #write(frame: Uint8Array): void {
    this.#out.write(frame);
  }

  #onChannel(chunk: Uint8Array): void {
    // Whatever a worker that is being ended still sends is not read.
    if (this.#dead || this.#stopping) return;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.#protocolError(err instanceof Error ? err.message : String(err));
      return;
    }
    for (const frame of frames) {
      if (frame.kind !== FrameKind.json) {
        this.#protocolError("the worker sent a message chunk");
        return;
      }
      let message: unknown;
      try {
        message = parseJsonPayload(frame.payload);
      } catch (err) {
        this.#protocolError(err instanceof Error ? err.message : String(err));
        return;
      }
      try {
        this.#onMessage(frame.id, message);
      } catch (err) {
        // Whatever a frame holds must not throw out of the pipe's handler,
        // which would end Postern itself.
        this.#protocolError(`cannot handle a frame: ${err instanceof Error ? err.name : "error"}`);
        return;
      }
      if (this.#stopping) return;
    }
  }

  #onMessage(id: number, message: unknown): void {
    const m = messageFields(message);
    const violation = turnViolation(id, m, this.#ready);
    if (violation !== undefined) {
      this.#protocolError(violation);
      return;
    }
    switch (m.t) {
      case "ready":
        this.#ready = true;
        for (const { id, call } of this.#queued.splice(0)) this.#start(id, call);
        this.#updateBusy();
        return;
      case "load_error":
        this.#events.loadError(this, m.error as string);
        for (const { call } of this.#queued.splice(0)) {
          call.settle({ ok: false, failure: "load_error", error: m.error as string });
        }
        this.stop();
        return;
      case "pull": {
        const entry = this.#inFlight.get(id);
        if (entry === undefined) {
          // A call given up after its timeout gets nothing more.
          if (!this.#abandoned.has(id)) {
            this.#protocolError(`a pull for call ${id}, which is not in flight`);
          }
          return;
        }
        const refused = pullViolation(id, entry);
        if (refused !== undefined) {
          this.#protocolError(refused);
        } else {
          this.#pull(id).catch((err) => this.terminate(`cannot stream the message: ${err}`));
        }
        return;
      }
      case "shared": {
        const entry = this.#inFlight.get(id);
        if (entry === undefined) {
          // Asked during a call given up after its timeout: it gets nothing more.
          if (!this.#abandoned.has(id)) {
            this.#protocolError(`a shared-state request for call ${id}, which is not in flight`);
          }
          return;
        }
        const refused = sharedViolation(id, entry);
        if (refused !== undefined) {
          this.#protocolError(refused);
        } else {
          this.#shared(id, entry, m);
        }
        return;
      }
      case "result": {
        const entry = this.#inFlight.get(id);
        if (!entry) {
          // A late answer of a call given up after its timeout is expected.
          if (!this.#abandoned.delete(id)) {
            this.#protocolError(`a result for call ${id}, which is not in flight`);
          }
          return;
        }
        this.#inFlight.delete(id);
        closeChunks(entry.chunks);
        this.#updateBusy();
        entry.call.settle(
          m.ok === true
            ? { ok: true, value: m.value }
            : { ok: false, failure: "hook_error", error: m.error as string },
        );
        if (this.load === 0) {
          this.#events.idle(this);
          if (this.#retiring) this.stop();
        }
        return;
      }
      default:
        this.#protocolError(unknownMessage(m.t));
    }
  }

  /** Answers a shared-state request, if its call is still in flight then. */
  #shared(id: number, entry: InFlight, request: Record<string, unknown>): void {
    entry.shared = (entry.shared ?? 0) + 1;
    const asked = this.#events.shared?.(this, request) ?? Promise.resolve({
      t: "shared_result" as const,
      rid: typeof request.rid === "number" ? request.rid : 0,
      ok: false as const,
      error: "shared state is not available to this hook",
    });
    asked.then((answer) => {
      entry.shared = (entry.shared ?? 1) - 1;
      if (answer !== undefined && this.#inFlight.get(id) === entry && !this.#dead) {
        this.#write(encodeJsonFrame(id, answer));
      }
    }, (err) => this.terminate(`cannot answer a shared-state request: ${err}`));
  }

  /** Sends the next chunk of a call's message, or its end. */
  async #pull(id: number): Promise<void> {
    const entry = this.#inFlight.get(id);
    const chunks = entry?.chunks;
    if (entry) entry.pulling = true;
    const next = chunks ? await chunks.next() : { done: true as const, value: undefined };
    if (entry) entry.pulling = false;
    if (next.done || !this.#inFlight.has(id)) {
      if (entry) entry.ended = true;
      this.#write(encodeFrame(FrameKind.end, id, new Uint8Array(0)));
    } else {
      this.#write(encodeFrame(FrameKind.chunk, id, next.value));
    }
  }

  /**
   * Tells the output whether a call needs the worker now: one in flight or
   * waiting for start-up, or the hook loading. Output between calls is
   * held to the log budget (see `output_ceiling.ts`).
   */
  #updateBusy(): void {
    this.#output.busy(!this.#ready || this.load > 0);
  }

  /** Ends the worker for writing past its output ceiling, and says why (in the pool). */
  #outputExcess(cause: string): void {
    if (this.#dead || this.#stopping) return;
    this.#events.outputExcess(this, cause);
    this.terminate(`output: ${cause}`);
  }

  /** Ends the worker at once, and says why (one log line, one count, in the pool). */
  #protocolError(detail: string): void {
    if (this.#dead || this.#stopping) return;
    this.#failure = "protocol";
    this.#events.protocolError(this, detail);
    this.terminate(`protocol error: ${detail}`);
  }

  #die(detail: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#output.close();
    const tail = (this.#output.stderrTail + this.#notes).trim().split("\n").slice(-3).join(" | ");
    const error = tail ? `${detail}: ${tail}` : detail;
    const failure = this.#failure;
    for (const { call } of this.#queued.splice(0)) {
      call.settle({ ok: false, failure, error });
    }
    for (const [id, entry] of this.#inFlight) {
      this.#inFlight.delete(id);
      closeChunks(entry.chunks);
      entry.call.settle({ ok: false, failure, error });
    }
    this.#events.exited(this, error, this.#stopping);
  }
}
