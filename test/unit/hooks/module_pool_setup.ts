/**
 * The setting the ModulePool unit tests share (module_pool_calls_test.ts,
 * module_pool_failures_test.ts, module_pool_output_test.ts): real deno
 * workers, the bootstrap from worker_source.ts written to a temporary file,
 * hook modules in a temporary hooks folder (pool_fixture.ts), and the log
 * lines of the pool a test started.
 *
 * `usePoolFixture()`, called in a describe, makes the folder before its
 * tests, ends the pools after each and removes the folder at the end;
 * `fixture` is that describe's, an import of it is live.
 *
 * @module
 */

import assert from "node:assert/strict";
import { after, afterEach, before } from "node:test";
import type { ModulePool, ModulePoolOptions } from "../../../src/hooks/module_pool.ts";
import type { CallOutcome } from "../../../src/hooks/worker.ts";
import { Logger } from "../../../src/log/mod.ts";
import { PoolFixture } from "./pool_fixture.ts";

/** The value of a successful outcome; fails the test otherwise. */
export function valueOf(outcome: CallOutcome): unknown {
  if (!outcome.ok) assert.fail(`expected a value, got ${outcome.failure}: ${outcome.error}`);
  return outcome.value;
}

/** An iterable over `chunks` that counts how often the consumer pulls from it. */
export function countedChunks(chunks: Uint8Array[]) {
  const stats = { pulls: 0, returned: false };
  const iterable: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next() {
          stats.pulls++;
          const value = chunks[i++];
          return Promise.resolve(
            value === undefined ? { done: true, value: undefined } : { done: false, value },
          );
        },
        return() {
          stats.returned = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
  return { iterable, stats };
}

/** The running describe's hooks folder and pools. */
export let fixture: PoolFixture;
/** The log lines of the pool last started. */
let lines: string[];

/** Gives the calling describe a hooks folder; ends its pools after each test. */
export function usePoolFixture(): void {
  before(async () => {
    fixture = await PoolFixture.create("postern-pool-");
  });
  afterEach(() => fixture.killAll());
  after(() => fixture.remove());
}

/** Writes `source` as a fresh hook module and starts a pool for it, logging into `lines`. */
export function startPool(
  source: string,
  overrides: Partial<ModulePoolOptions> = {},
): Promise<ModulePool> {
  lines = [];
  return fixture.start(source, {
    logger: new Logger("debug", (line) => lines.push(line)),
    ...overrides,
  });
}

/** The log lines of the pool last started whose message is `msg`. */
export const logged = (msg: string) =>
  lines.filter((l) => l.includes(` msg=${JSON.stringify(msg)}`));
