/**
 * The OpenAPI 3.1 description of the admin API, served at `/openapi.json`.
 *
 * @module
 */

const error = {
  description: "An error, with a message",
  content: {
    "application/json": {
      schema: {
        type: "object",
        properties: {
          error: { type: "string" },
          issues: {
            type: "array",
            items: {
              type: "object",
              properties: { field: { type: "string" }, problem: { type: "string" } },
            },
          },
        },
        required: ["error"],
      },
    },
  },
};

const id = { name: "id", in: "path", required: true, schema: { type: "string" } };

/** What every route with a body may answer: the body is empty, `{}` or its schema's JSON. */
const bodyErrors = {
  "400": { ...error, description: "The body is not valid JSON, or not what the route takes" },
  "413": { ...error, description: "The body is larger than 64 KiB" },
  "415": { ...error, description: "The body is not declared application/json" },
};

const action = (summary: string, extra: Record<string, unknown> = {}) => ({
  post: {
    summary,
    parameters: [id],
    ...extra,
    responses: {
      "200": { description: "Done" },
      ...bodyErrors,
      "401": error,
      "404": error,
      "409": {
        ...error,
        description: "The message is being delivered, or held, released or ended, right now",
      },
    },
  },
});

const query = (name: string, description: string, schema: Record<string, unknown>) => ({
  name,
  in: "query",
  required: false,
  description,
  schema,
});

/** The description. */
export const OPENAPI = {
  openapi: "3.1.0",
  info: {
    title: "Postern admin API",
    version: "1",
    description: "Status, policy reload, metrics and queue of a Postern mail server. " +
      "Every route but /health and /openapi.json needs the bearer token from the token file.",
  },
  components: {
    securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
  },
  security: [{ bearer: [] }],
  paths: {
    "/health": {
      get: {
        summary: "Liveness; with a challenge, the proof that this server holds the token",
        security: [],
        parameters: [
          query(
            "challenge",
            "22 to 128 base64url characters; the answer's proof is their HMAC-SHA256 keyed by " +
              'the token (over "postern-admin-proof:" and the challenge), base64url',
            { type: "string" },
          ),
        ],
        responses: { "200": { description: "Alive" }, "400": error },
      },
    },
    "/openapi.json": {
      get: { summary: "This description", security: [], responses: { "200": { description: "" } } },
    },
    "/status": {
      get: {
        summary: "Version, runtime, uptime, listeners, policy epoch and last error, hooks, queue",
        responses: { "200": { description: "Status" }, "401": error },
      },
    },
    "/cluster": {
      get: {
        summary: "With cluster set: this node's link (shared or local) and the fleet's live nodes",
        responses: {
          "200": { description: "The link and the nodes" },
          "401": error,
          "404": error,
          "503": error,
        },
      },
    },
    "/reload": {
      post: {
        summary: "Reload the policy now; the last good one stays if the new one is invalid",
        responses: {
          "200": { description: "The policy status after the reload" },
          ...bodyErrors,
          "401": error,
        },
      },
    },
    "/acme/renew": {
      post: {
        summary: "Order a new ACME certificate now (tls.acme); applied live when issued",
        responses: {
          "200": { description: "ok, and the ACME status after the order" },
          ...bodyErrors,
          "401": error,
          "404": error,
        },
      },
    },
    "/metrics": {
      get: {
        summary: "Prometheus text format",
        responses: {
          "200": {
            description: "Metrics",
            content: { "text/plain": { schema: { type: "string" } } },
          },
          "401": error,
        },
      },
    },
    "/queue": {
      get: {
        summary: "Queued messages, oldest first",
        parameters: [
          query("domain", "with a pending recipient in this domain", { type: "string" }),
          query("sender", "from this envelope sender", { type: "string" }),
          query("state", "pending, held or running", {
            type: "string",
            enum: ["pending", "held", "running"],
          }),
          query("min_age", "at least this many seconds in the queue", { type: "integer" }),
          query("limit", "page size, 1 to 1000 (default 100)", { type: "integer" }),
          query("offset", "items to skip (default 0)", { type: "integer" }),
        ],
        responses: { "200": { description: "A page of items" }, "400": error, "401": error },
      },
    },
    "/queue/{id}": {
      get: {
        summary: "One message: envelope, recipients with attempts and last errors, headers",
        parameters: [id],
        responses: { "200": { description: "The message" }, "401": error, "404": error },
      },
      delete: {
        summary: "Delete a message without a bounce",
        parameters: [id],
        responses: {
          "200": { description: "Deleted" },
          ...bodyErrors,
          "401": error,
          "404": error,
          "409": error,
        },
      },
    },
    "/queue/{id}/retry": action("Make a message due now"),
    "/queue/{id}/hold": action("Hold a message: no attempt until released (kept over restarts)"),
    "/queue/{id}/release": action("Release a held message; it is due now"),
    "/queue/{id}/bounce": action("Fail a message's pending recipients now", {
      requestBody: {
        required: false,
        content: {
          "application/json": {
            schema: {
              type: "object",
              properties: { reason: { type: "string", maxLength: 200 } },
              additionalProperties: false,
            },
          },
        },
      },
    }),
  },
} as const;
