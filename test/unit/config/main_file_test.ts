/**
 * postern.yaml itself: whether it was there and had anything in it (an
 * empty file on a reload is most likely a save in progress), and what its
 * errors say: a value of the wrong type is not a misspelt setting.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../../src/config/mod.ts";
import { configDirs, configError } from "./config_dirs.ts";

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

  it("names a section of the wrong type by its type, not as an unknown setting", async () => {
    const cases: Array<[string, string]> = [
      ["smtp: 5\n", ":1: smtp must be a mapping of settings, not the number 5"],
      ["smtp:\n", ":1: smtp must be a mapping of settings, not an empty value"],
      ["smtp: [1, 2]\n", ":1: smtp must be a mapping of settings, not a list"],
      ["domains: [a.test]\n", ":1: domains must be a mapping of settings, not a list"],
      [
        'hooks:\n  post_data: "on"\n',
        ':2: hooks.post_data must be a mapping of settings, not the text "on"',
      ],
      [
        'smtp:\n  listen: "127.0.0.1:25"\n',
        ':2: smtp.listen must be a list, not the text "127.0.0.1:25"',
      ],
      ["- a\n- b\n", ":1: the file must be a mapping of settings, not a list"],
      ["just text\n", ':1: the file must be a mapping of settings, not the text "just text"'],
    ];
    for (const [text, expected] of cases) {
      const dir = await configDir({ "postern.yaml": text });
      const { message } = await configError(dir);
      assert.equal(message, `${join(dir, "postern.yaml")}${expected}`, JSON.stringify(text));
    }
  });

  it("still calls an unknown key a misspelling", async () => {
    const dir = await configDir({ "postern.yaml": "smtp:\n  max_recipints: 5\n" });
    assert.equal(
      (await configError(dir)).message,
      `${
        join(dir, "postern.yaml")
      }:2: smtp.max_recipints is not a known setting (check the spelling)`,
    );
  });

  it("names the file of a YAML alias bomb, as a configuration error", async () => {
    const rows = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (const [name, previous] of [["b", "a"], ["c", "b"], ["d", "c"], ["e", "d"]]) {
      rows.push(`${name}: &${name} [${Array(9).fill(`*${previous}`).join(", ")}]`);
    }
    rows.push(`f: [${Array(9).fill("*e").join(", ")}]`, "");
    const dir = await configDir({ "postern.yaml": rows.join("\n") });
    const error = await configError(dir);
    assert.equal(error.file, join(dir, "postern.yaml"));
    assert.equal(
      error.message,
      `${join(dir, "postern.yaml")}: invalid YAML: Excessive alias count indicates a resource ` +
        `exhaustion attack`,
    );
  });
});
