/**
 * Records the file-system calls that make mail durable, through the seam
 * in src/queue/fs_calls.ts, so tests can assert their order: a sync that is
 * missing or comes too late shows only after a power failure otherwise.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { FileHandle } from "node:fs/promises";
import { type DurabilityFs, durabilityFs } from "../../../src/queue/fs_calls.ts";

/** A recorded call: its beginning or its end, or a mark the test set. */
export interface FsEvent {
  call: "open" | "write" | "read" | "datasync" | "sync" | "close" | "rename" | "unlink" | "mark";
  phase: "begin" | "end";
  /** The file or directory (for a rename, its source). */
  path: string;
  /** The target of a rename. */
  to?: string;
}

/** Handle methods whose beginning and end are recorded. */
const RECORDED = new Set(["write", "read", "datasync", "sync", "close"]);

/** Records durability calls between {@linkcode install} and {@linkcode restore}. */
export class FsRecorder {
  readonly events: FsEvent[] = [];
  #saved: DurabilityFs | undefined;
  /**
   * The recorded handles by the path they have now: a file opened under
   * one name (a spare) and renamed is recorded under its new name from the
   * rename on, as `strace -y` shows it.
   */
  #handlesAt = new Map<string, Array<{ path: string }>>();
  /** Calls held back until the test lets them go (see {@linkcode hold}). */
  #gates: Array<{ call: FsEvent["call"]; path: string; open: Promise<void> }> = [];
  /** Calls made to fail (see {@linkcode fail}). */
  #failures: Array<{ call: FsEvent["call"]; path: string; skip: number; error: Error }> = [];

  /** Replaces the seam's calls with recording ones. */
  install(): void {
    const real = { ...durabilityFs };
    this.#saved = real;
    const record = async <T>(event: Omit<FsEvent, "phase">, run: () => Promise<T>) => {
      const gate = this.#gates.find((g) => g.call === event.call && g.path === event.path);
      if (gate) await gate.open;
      const failure = this.#failures.find((f) => f.call === event.call && f.path === event.path);
      if (failure && failure.skip-- <= 0) {
        this.#failures = this.#failures.filter((f) => f !== failure);
        throw failure.error;
      }
      this.events.push({ ...event, phase: "begin" });
      try {
        return await run();
      } finally {
        this.events.push({ ...event, phase: "end" });
      }
    };
    durabilityFs.open = (async (path: string, ...rest: unknown[]) => {
      const handle = await record(
        { call: "open", path: String(path) },
        () => (real.open as (...a: unknown[]) => Promise<FileHandle>)(path, ...rest),
      );
      return this.#wrap(handle, String(path), record);
    }) as DurabilityFs["open"];
    const move = (from: string, to: string) => {
      const moved = this.#handlesAt.get(from) ?? [];
      this.#handlesAt.delete(from);
      for (const at of moved) at.path = to;
      this.#handlesAt.set(to, [...(this.#handlesAt.get(to) ?? []), ...moved]);
    };
    durabilityFs.rename = (async (from: string, to: string) => {
      await record(
        { call: "rename", path: String(from), to: String(to) },
        () => real.rename(from, to),
      );
      move(String(from), String(to));
    }) as DurabilityFs["rename"];
    durabilityFs.unlink =
      ((path: string) =>
        record({ call: "unlink", path: String(path) }, () => real.unlink(path))) as DurabilityFs[
          "unlink"
        ];
  }

  /** Puts the real calls back. */
  restore(): void {
    if (this.#saved) Object.assign(durabilityFs, this.#saved);
    this.#saved = undefined;
  }

  /**
   * Holds back the calls of `call` on `path` made from now on, until the
   * returned function is called: a slow disk on demand, so a test can see
   * whether anything waits for them.
   */
  hold(call: FsEvent["call"], path: string): () => void {
    let release = () => {};
    const open = new Promise<void>((resolve) => release = resolve);
    const gate = { call, path, open };
    this.#gates.push(gate);
    return () => {
      this.#gates = this.#gates.filter((g) => g !== gate);
      release();
    };
  }

  /**
   * Makes the next call of `call` on `path`, after `skip` that succeed,
   * fail with `error` (a disk that fails at one precise step).
   */
  fail(call: FsEvent["call"], path: string, error: Error, skip = 0): void {
    this.#failures.push({ call, path, skip, error });
  }

  /** Records a point in the test, such as "commit resolved". */
  mark(label: string): void {
    this.events.push({ call: "mark", phase: "end", path: label });
  }

  /** Index of the first event matching; fails the test when there is none. */
  find(call: FsEvent["call"], phase: FsEvent["phase"], path: string, after = -1): number {
    const index = this.events.findIndex((e, i) =>
      i > after && e.call === call && e.phase === phase && e.path === path
    );
    assert.ok(
      index >= 0,
      `no ${call} ${phase} on ${path} after event ${after}; recorded:\n${this.describe()}`,
    );
    return index;
  }

  /** Index of the first rename of `from` to `to`. */
  findRename(phase: FsEvent["phase"], from: string, to: string, after = -1): number {
    const index = this.events.findIndex((e, i) =>
      i > after && e.call === "rename" && e.phase === phase && e.path === from && e.to === to
    );
    assert.ok(index >= 0, `no rename ${phase} ${from} -> ${to}; recorded:\n${this.describe()}`);
    return index;
  }

  /** The events, one a line, for assertion messages. */
  describe(): string {
    return this.events.map((e, i) =>
      `${i} ${e.phase} ${e.call} ${e.path}${e.to === undefined ? "" : ` -> ${e.to}`}`
    ).join("\n");
  }

  #wrap(
    handle: FileHandle,
    openedAt: string,
    record: <T>(event: Omit<FsEvent, "phase">, run: () => Promise<T>) => Promise<T>,
  ): FileHandle {
    const at = { path: openedAt };
    this.#handlesAt.set(openedAt, [...(this.#handlesAt.get(openedAt) ?? []), at]);
    return new Proxy(handle, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        if (typeof prop === "string" && RECORDED.has(prop)) {
          return (...args: unknown[]) =>
            record(
              { call: prop as FsEvent["call"], path: at.path },
              () => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args),
            );
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  }
}
