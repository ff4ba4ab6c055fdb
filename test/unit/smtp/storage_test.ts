import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SMTPServerAddress } from "smtp-server";
import { FreeSpace } from "../../../src/queue/mod.ts";
import { declaredSize, storageRefusal } from "../../../src/smtp/storage.ts";

function address(args: Record<string, string> | false): SMTPServerAddress {
  return { address: "a@b.test", args } as SMTPServerAddress;
}

function freeSpace(bytes: number | Error): FreeSpace {
  return new FreeSpace("/spool", {
    measure: () => bytes instanceof Error ? Promise.reject(bytes) : Promise.resolve(bytes),
  });
}

describe("storage check at MAIL FROM", () => {
  it("declaredSize() reads the SIZE parameter, and 0 when it is missing or not a number", () => {
    assert.equal(declaredSize(address({ SIZE: "12345" })), 12345);
    assert.equal(declaredSize(address({ BODY: "8BITMIME" })), 0);
    assert.equal(declaredSize(address({ SIZE: "-1" })), 0);
    assert.equal(declaredSize(address({ SIZE: "1e9" })), 0);
    assert.equal(declaredSize(address(false)), 0);
  });

  it("storageRefusal() is 452 4.3.1 when less than the declared size plus the reserve is free", async () => {
    const space = freeSpace(10_000);
    assert.deepEqual(await storageRefusal(space, address({ SIZE: "2001" }), 8000), {
      code: 452,
      enhanced: "4.3.1",
      text: "Insufficient system storage",
    });
    assert.equal(await storageRefusal(space, address({ SIZE: "2000" }), 8000), undefined);
    assert.equal(await storageRefusal(space, address(false), 10_000), undefined);
    assert.equal((await storageRefusal(space, address(false), 10_001))?.code, 452);
  });

  it("storageRefusal() lets mail in when the file system cannot be measured, or is not checked", async () => {
    assert.equal(await storageRefusal(freeSpace(new Error("EIO")), address({}), 1), undefined);
    assert.equal(await storageRefusal(undefined, address({ SIZE: "1" }), 1e15), undefined);
  });
});
