import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SMTPServerAddress } from "smtp-server";
import { NAMELESS, unsupportedParameter } from "../../../src/smtp/parameters.ts";

/** An address as smtp-server parses it: upper-case keys, `true` for a bare keyword. */
function address(args: Record<string, string | true> | false): SMTPServerAddress {
  return { address: "s@client.test", args } as SMTPServerAddress;
}

const NONE = { esmtp: true, auth: false };

describe("unsupportedParameter", () => {
  it("accepts no parameters at all", () => {
    assert.equal(unsupportedParameter("mail", address(false), NONE), undefined);
    assert.equal(unsupportedParameter("rcpt", address(false), NONE), undefined);
    assert.equal(unsupportedParameter("mail", address({}), NONE), undefined);
  });

  it("accepts SIZE, BODY and SMTPUTF8 on MAIL FROM, the extensions every listener offers", () => {
    const args = { SIZE: "1000", BODY: "8BITMIME", SMTPUTF8: true } as const;
    assert.equal(unsupportedParameter("mail", address(args), NONE), undefined);
  });

  it("refuses a parameter without a name as a syntax error", () => {
    assert.deepEqual(unsupportedParameter("mail", address({ SIZE: "1", [NAMELESS]: true }), NONE), {
      code: 501,
      enhanced: "5.5.4",
      text: "Syntax error in parameters: one has no name",
    });
  });

  it("accepts no parameter at all in a session begun with HELO", () => {
    const helo = { esmtp: false, auth: false };
    for (const key of ["SIZE", "BODY", "SMTPUTF8"]) {
      assert.equal(
        unsupportedParameter("mail", address({ [key]: true }), helo)?.text,
        `Unsupported parameter: ${key}`,
      );
    }
    assert.equal(unsupportedParameter("mail", address(false), helo), undefined);
  });

  it("accepts AUTH= only when AUTH was offered and used", () => {
    assert.equal(
      unsupportedParameter("mail", address({ AUTH: "<>" }), { esmtp: true, auth: true }),
      undefined,
    );
    assert.deepEqual(unsupportedParameter("mail", address({ AUTH: "<>" }), NONE), {
      code: 555,
      enhanced: "5.5.4",
      text: "Unsupported parameter: AUTH",
    });
  });

  it("refuses unknown parameters, and those of extensions not offered, naming them", () => {
    const cases: Array<["mail" | "rcpt", Record<string, string | true>, string]> = [
      ["mail", { FOO: "BAR" }, "FOO"],
      ["mail", { XYZ: true }, "XYZ"],
      ["mail", { "8BITMTUTF8": true }, "8BITMTUTF8"],
      ["mail", { SIZE: "10", RET: "FULL", ENVID: "x" }, "RET"],
      ["mail", { REQUIRETLS: true }, "REQUIRETLS"],
      ["rcpt", { NOTIFY: "SUCCESS", ORCPT: "rfc822;x@y" }, "NOTIFY"],
      ["rcpt", { FOO: "BAR" }, "FOO"],
      // RCPT TO has no parameter of an offered extension, not even MAIL's.
      ["rcpt", { SIZE: "10" }, "SIZE"],
      ["rcpt", { AUTH: "<>" }, "AUTH"],
    ];
    for (const [command, args, named] of cases) {
      assert.deepEqual(
        unsupportedParameter(command, address(args), { esmtp: true, auth: true }),
        { code: 555, enhanced: "5.5.4", text: `Unsupported parameter: ${named}` },
        `${command} ${JSON.stringify(args)}`,
      );
    }
  });

  it("quotes a parameter name as visible ASCII, cut at 64 characters", () => {
    const long = "X".repeat(100);
    assert.equal(
      unsupportedParameter("mail", address({ [long]: true }), NONE)?.text,
      `Unsupported parameter: ${"X".repeat(64)}...`,
    );
    assert.equal(
      unsupportedParameter("mail", address({ "A\u0001\u00e9B": true }), NONE)?.text,
      "Unsupported parameter: A??B",
    );
  });
});
