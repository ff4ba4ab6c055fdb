/**
 * postern.yaml itself: whether it was there and had anything in it (an
 * empty file on a reload is most likely a save in progress).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { configDirs } from "./config_dirs.ts";

describe("loadConfig() and the main file", () => {
  const configDir = configDirs("postern-main-");

  it("says whether postern.yaml was read empty (truncated by a save in progress)", async () => {
    for (const [text, empty] of [["", true], [" \n\n", true], ["# defaults\n", false]] as const) {
      const dir = await configDir({ "postern.yaml": text });
      const config = await loadConfig({ configDir: dir });
      assert.equal(config.mainFile, join(dir, "postern.yaml"));
      assert.equal(config.mainFileEmpty, empty, JSON.stringify(text));
    }
    const set = await loadConfig({
      configDir: await configDir({ "postern.yaml": "smtp:\n  max_message_size: 1MiB\n" }),
    });
    assert.equal(set.mainFileEmpty, false);
    const none = await loadConfig({ configDir: await configDir({}) });
    assert.equal(none.mainFile, undefined);
    assert.equal(none.mainFileEmpty, false);
  });
});
