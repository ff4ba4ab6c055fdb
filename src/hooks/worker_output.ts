/**
 * What a hook worker prints, on standard output and error: split into log
 * lines (never answers), within the worker's output budget (see
 * `output_budget.ts`). While over budget a chunk is counted and dropped
 * without being decoded. Output past its ceiling (see `output_ceiling.ts`)
 * ends the worker.
 *
 * @module
 */

import {
  countLines,
  type DroppedOutput,
  OutputBudget,
  type OutputLimits,
} from "./output_budget.ts";
import { OutputCeiling } from "./output_ceiling.ts";

/** Where the output of one worker goes. */
export interface OutputSink {
  /** A line to log. */
  line(line: string): void;
  /** The output went over its budget: what follows is dropped. */
  over(): void;
  /** Output dropped since the last report; `ended` sums up a flood that is over. */
  dropped(dropped: DroppedOutput, ended: (DroppedOutput & { seconds: number }) | undefined): void;
  /** The output went past its ceiling, for `cause`: the worker must end (said once). */
  excess(cause: string): void;
}

/** Exit details keep this much of the last standard error output. */
const STDERR_TAIL = 2000;

/** A line longer than this is logged in pieces. */
const MAX_LINE = 4096;

const encoder = new TextEncoder();

/** The output of one worker. */
export class WorkerOutput {
  #sink: OutputSink;
  #limits: OutputLimits;
  #budget: OutputBudget;
  #ceiling: OutputCeiling;
  /** Past the ceiling: nothing more is read into the log. */
  #excess = false;
  #dropTimer: ReturnType<typeof setInterval> | undefined;
  #stderrTail = "";
  #partial = { stdout: "", stderr: "" };
  // One decoder per stream, so a character split across reads stays whole.
  #decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };

  /**
   * Creates the output of a worker whose budget is `limits`; `now` is a
   * monotonic clock in milliseconds (for tests).
   */
  constructor(
    limits: OutputLimits,
    sink: OutputSink,
    now: () => number = () => performance.now(),
  ) {
    this.#limits = limits;
    this.#budget = new OutputBudget(limits, now);
    this.#ceiling = new OutputCeiling(limits, now);
    this.#sink = sink;
  }

  /** The worker has a call in flight (or is loading its hook), or has none. */
  busy(busy: boolean): void {
    this.#ceiling.busy(busy);
  }

  /** The end of what the worker wrote to standard error, for exit details. */
  get stderrTail(): string {
    return this.#stderrTail;
  }

  /** Takes a chunk the worker wrote on `stream`. */
  push(chunk: Uint8Array, stream: "stdout" | "stderr"): void {
    if (this.#excess) return;
    const cause = this.#ceiling.read(chunk.byteLength);
    if (cause !== undefined) {
      this.#end(cause);
      return;
    }
    if (this.#budget.dropping) {
      if (this.#ceiling.stray) {
        this.#budget.drop(countLines(chunk), chunk.byteLength);
        this.#end(this.#strayCause());
        return;
      }
      this.#budget.drop(countLines(chunk), chunk.byteLength);
      // The line cut by this chunk is dropped too; decoding starts afresh.
      this.#partial[stream] = "";
      this.#decoders[stream] = new TextDecoder();
      return;
    }
    const text = this.#decoders[stream].decode(chunk, { stream: true });
    if (stream === "stderr") this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL);
    const lines = (this.#partial[stream] + text).split("\n");
    let rest = lines.pop() ?? "";
    if (rest.length > MAX_LINE) {
      lines.push(rest);
      rest = "";
    }
    this.#partial[stream] = rest;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const admission = this.#budget.admit(encoder.encode(line).byteLength + 1);
      if (admission === "log") {
        if (line.trim() !== "") this.#sink.line(line);
        continue;
      }
      // Over budget: the rest of this chunk goes unlogged.
      let bytes = 0;
      for (let j = i + 1; j < lines.length; j++) bytes += lines[j]!.length + 1;
      this.#budget.drop(lines.length - i - 1, bytes);
      this.#partial[stream] = "";
      if (this.#ceiling.stray) this.#end(this.#strayCause());
      else if (admission === "over") this.#startDropping();
      return;
    }
  }

  /** The worker is gone: logs what is left of its lines, and sums up a flood in progress. */
  close(): void {
    for (const rest of Object.values(this.#partial)) {
      if (rest.trim() !== "" && this.#budget.admit(rest.length) === "log") this.#sink.line(rest);
    }
    this.#partial = { stdout: "", stderr: "" };
    if (this.#dropTimer !== undefined || this.#budget.dropping) this.#reportDropped(true);
  }

  /** Past the ceiling: says so once; the worker is ended. */
  #end(cause: string): void {
    this.#excess = true;
    this.#sink.excess(cause);
  }

  #strayCause(): string {
    const { linesPerSecond, bytesPerSecond } = this.#limits;
    return `its output went over its budget (${linesPerSecond} lines, ${bytesPerSecond} bytes ` +
      "a second) while no call was in flight";
  }

  /** Says once that output is dropped, then reports what is dropped each second. */
  #startDropping(): void {
    this.#sink.over();
    if (this.#dropTimer !== undefined) return;
    this.#dropTimer = setInterval(() => this.#reportDropped(false), 1000);
    (this.#dropTimer as { unref?: () => void }).unref?.();
  }

  #reportDropped(final: boolean): void {
    const dropped = this.#budget.takeDropped();
    const ended = this.#budget.takeEnded(final);
    if (dropped.lines > 0 || dropped.bytes > 0 || ended) this.#sink.dropped(dropped, ended);
    if (ended || final) {
      clearInterval(this.#dropTimer);
      this.#dropTimer = undefined;
    }
  }
}
