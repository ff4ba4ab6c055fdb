import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { adminApp, type AdminDeps, adminProof, OPENAPI } from "../../../src/admin/mod.ts";

const TOKEN = "t".repeat(20) + "0123456789abcdefghijklmnopqrstuv";
const ID = "01aaaaaaaaaaaaaa";

/**
 * Dependencies of which only the token exists: any handler reached throws,
 * and the app answers 500, which shows the request got past the token check.
 */
function deps(): AdminDeps {
  return new Proxy({ token: TOKEN } as AdminDeps, {
    get(target, prop) {
      if (prop === "token") return target.token;
      if (prop === "now" || prop === "then") return undefined;
      throw new Error(`${String(prop)} is not part of this test`);
    },
  });
}

/** Every operation of the OpenAPI description, path parameters filled. */
function operations(): Array<{ method: string; path: string; open: boolean }> {
  const spec = OPENAPI as unknown as {
    security: unknown[];
    paths: Record<string, Record<string, { security?: unknown[] }>>;
  };
  return Object.entries(spec.paths).flatMap(([template, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      method: method.toUpperCase(),
      path: template.replace("{id}", ID),
      open: (op.security ?? spec.security).length === 0,
    }))
  );
}

describe("adminApp token check", () => {
  const app = adminApp(deps());
  const request = (method: string, path: string, authorization?: string) =>
    app.request(path, {
      method,
      headers: authorization === undefined ? {} : { authorization },
    });

  it("describes at least the routes the README lists", () => {
    const listed = operations().map((o) => `${o.method} ${o.path}`);
    for (
      const route of [
        "GET /health",
        "GET /status",
        "POST /reload",
        "GET /metrics",
        "GET /queue",
        `GET /queue/${ID}`,
        `DELETE /queue/${ID}`,
        `POST /queue/${ID}/retry`,
        `POST /queue/${ID}/hold`,
        `POST /queue/${ID}/release`,
        `POST /queue/${ID}/bounce`,
      ]
    ) {
      assert.ok(listed.includes(route), route);
    }
  });

  for (const { method, path, open } of operations()) {
    if (open) {
      it(`${method} ${path} answers without a token`, async () => {
        assert.equal((await request(method, path)).status, 200);
      });
      continue;
    }
    it(`${method} ${path} answers 401 without the right bearer token`, async () => {
      const wrong = [
        undefined,
        "",
        "Bearer",
        `Bearer ${TOKEN.slice(0, -1)}w`,
        `Bearer ${TOKEN.slice(0, -1)}`,
        `Bearer ${TOKEN}x`,
        `Bearer ${TOKEN} extra`,
        `Basic ${TOKEN}`,
        `xBearer ${TOKEN}`,
        `Token Bearer ${TOKEN}`,
        TOKEN,
      ];
      for (const authorization of wrong) {
        const response = await request(method, path, authorization);
        assert.equal(response.status, 401, `${authorization}`);
        assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="postern"');
        assert.deepEqual(await response.json(), { error: "a valid bearer token is required" });
      }
      // The right one, in either case of the scheme and with any spacing,
      // gets past the check.
      for (const header of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `Bearer \t ${TOKEN} `]) {
        const response = await request(method, path, header);
        assert.notEqual(response.status, 401, header);
      }
    });
  }

  it("answers an unknown route 401 without a token, so routes cannot be probed", async () => {
    assert.equal((await request("GET", "/nothing-here")).status, 401);
  });

  it("proves on /health, without a token, that it holds the token, for each challenge anew", async () => {
    const challenge = "c".repeat(22) + "0123456789";
    const response = await request("GET", `/health?challenge=${challenge}`);
    assert.equal(response.status, 200);
    const { status, proof } = await response.json();
    assert.equal(status, "ok");
    assert.equal(proof, await adminProof(TOKEN, challenge));
    assert.notEqual(proof, await adminProof(`${TOKEN}x`, challenge));
    assert.notEqual(proof, await adminProof(TOKEN, `${challenge}x`));
    assert.match(proof, /^[A-Za-z0-9_-]{43}$/);
    for (const bad of ["short", "x".repeat(129), `${"x".repeat(22)}+`]) {
      const refused = await request("GET", `/health?challenge=${encodeURIComponent(bad)}`);
      assert.equal(refused.status, 400, bad);
      assert.equal((await refused.json()).issues[0].field, "challenge");
    }
  });
});

describe("adminApp request bodies", () => {
  const app = adminApp(deps());
  const post = (path: string, body: string, type?: string) =>
    app.request(path, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, ...(type ? { "content-type": type } : {}) },
      body,
    });
  const bounce = `/queue/${ID}/bounce`;

  it("refuses a body that is not declared JSON with 415, valid JSON or not", async () => {
    for (const type of [undefined, "text/plain", "application/x-www-form-urlencoded"]) {
      const response = await post(bounce, '{"reason":"CUSTOM","extra_field":1}', type);
      assert.equal(response.status, 415, type);
      assert.match((await response.json()).error, /must be JSON/);
    }
  });

  it("refuses malformed JSON with 400 and says so", async () => {
    for (const type of ["application/json", "application/json; charset=utf-8"]) {
      const response = await post(bounce, "{bad", type);
      assert.equal(response.status, 400);
      assert.match((await response.json()).error, /^the request body is not valid JSON/);
    }
  });

  it("tells a body of the wrong type from a field it does not know", async () => {
    const cases: Array<[string, Array<{ field: string; problem: string }>]> = [
      ["null", [{ field: "(body)", problem: "must be a JSON object" }]],
      ["[1]", [{ field: "(body)", problem: "must be a JSON object" }]],
      ['"text"', [{ field: "(body)", problem: "must be a JSON object" }]],
      ['{"reason":"x","extra_field":1}', [{
        field: "extra_field",
        problem: "is not a known field",
      }]],
      ['{"reason":5}', [{ field: "reason", problem: "must be text" }]],
    ];
    for (const [body, issues] of cases) {
      const response = await post(bounce, body, "application/json");
      assert.equal(response.status, 400, body);
      assert.deepEqual((await response.json()).issues, issues, body);
    }
  });

  it("validates the body of routes that take none: nothing, or {}", async () => {
    for (const path of ["/reload", `/queue/${ID}/retry`, `/queue/${ID}/hold`]) {
      const response = await post(path, '{"force":true}', "application/json");
      assert.equal(response.status, 400, path);
      assert.deepEqual((await response.json()).issues, [
        { field: "force", problem: "is not a known field" },
      ]);
      assert.equal((await post(path, "{}", "text/plain")).status, 415, path);
      // Past validation, the handler reaches dependencies this test lacks (500).
      assert.equal((await post(path, "{}", "application/json")).status, 500, path);
      assert.equal((await post(path, "")).status, 500, path);
    }
  });
});
