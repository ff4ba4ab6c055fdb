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
