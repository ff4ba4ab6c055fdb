import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { SDK_TYPES_SOURCE } from "../../../src/hooks/sdk_types.ts";

describe("SDK_TYPES_SOURCE", () => {
  it("is hooks/types.ts as it is now (run scripts/gen_hook_sdk.ts after changing it)", async () => {
    const text = await readFile(new URL("../../../hooks/types.ts", import.meta.url), "utf8");
    assert.equal(SDK_TYPES_SOURCE, text);
  });

  it("imports nothing, so that a hook type-checks without the SDK's dependencies", () => {
    assert.doesNotMatch(SDK_TYPES_SOURCE, /^\s*import\s/m);
  });
});
