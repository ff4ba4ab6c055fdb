/**
 * `postern --help` names every command and hook event (issue 16).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { posternCommand, run } from "./harness.ts";

describe("postern --help", () => {
  it("lists the four hook events and the dkim commands", async () => {
    const [cmd, ...args] = posternCommand(["--help"]);
    const help = await run(cmd!, args);
    assert.equal(help.code, 0, help.stderr);
    const text = help.stdout.replace(/\s+/g, " ");
    for (const event of ["post-data", "alias-resolve", "alias-exists", "pre-delivery-attempt"]) {
      assert.ok(text.includes(event), `--help does not name ${event}:\n${help.stdout}`);
    }
    assert.match(text, /dkim keygen DOMAIN/);
    assert.match(text, /dkim status \[DOMAIN\]/);
    assert.match(text, /becomes active|signs once the record is published/);
  });
});
