import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { execHookEnv } from "../../../src/hooks/exec_hook.ts";

const INPUT = {
  queueId: "q1",
  remoteAddr: "192.0.2.1",
  ehloDomain: "client.test",
  mailFrom: "a@client.test",
  rcptTo: ["b@example.test", "c@example.test"],
  authAs: "alice@example.test",
  onTls: true,
  fromLocalDomain: false,
  spfPass: true,
};

describe("execHookEnv", () => {
  it("execHookEnv() sets USER and SHELL, empty, when Postern's environment lacks them", () => {
    const env = execHookEnv(() => undefined, "/etc/postern");
    assert.deepEqual(env, {
      USER: "",
      SHELL: "",
      PATH: "/usr/local/bin:/usr/bin:/bin",
      PWD: "/etc/postern",
    });
  });

  it("execHookEnv() copies USER, SHELL and PATH from Postern's environment, and nothing else", () => {
    const own: Record<string, string> = {
      USER: "postern",
      SHELL: "/bin/sh",
      PATH: "/bin",
      HOME: "/var/lib/postern",
      SECRET: "x",
    };
    assert.deepEqual(execHookEnv((name) => own[name], "/etc/postern"), {
      USER: "postern",
      SHELL: "/bin/sh",
      PATH: "/bin",
      PWD: "/etc/postern",
    });
  });

  it("execHookEnv() adds chasquid's variables of the transaction for post-data", () => {
    const env = execHookEnv(() => undefined, "/etc/postern", INPUT);
    assert.deepEqual(env, {
      USER: "",
      SHELL: "",
      PATH: "/usr/local/bin:/usr/bin:/bin",
      PWD: "/etc/postern",
      REMOTE_ADDR: "192.0.2.1",
      EHLO_DOMAIN: "client.test",
      MAIL_FROM: "a@client.test",
      RCPT_TO: "b@example.test c@example.test",
      AUTH_AS: "alice@example.test",
      ON_TLS: "1",
      FROM_LOCAL_DOMAIN: "0",
      SPF_PASS: "1",
    });
  });
});
