/**
 * What the admin API accepts: the schemas of its queries and bodies, and
 * the middleware and hook that turn what does not fit into a 400 (or 415)
 * naming the fields at fault.
 *
 * @module
 */

import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import * as v from "valibot";
import { CHALLENGE_PATTERN } from "./token.ts";

/** The query of `GET /queue`. */
export const QueueQuerySchema = v.strictObject({
  /** Items with a recipient in this domain. */
  domain: v.optional(v.pipe(v.string(), v.minLength(1), v.toLowerCase())),
  /** Items from this envelope sender ("" for the null sender). */
  sender: v.optional(v.pipe(v.string(), v.toLowerCase())),
  /** pending (waiting for an attempt), held, or running. */
  state: v.optional(v.picklist(["pending", "held", "running"], "must be pending, held or running")),
  /** Items at least this many seconds in the queue. */
  min_age: v.optional(
    v.pipe(v.string(), v.regex(/^\d+$/, "must be whole seconds"), v.transform(Number)),
  ),
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d+$/, "must be a whole number"),
      v.transform(Number),
      v.minValue(1, "must be at least 1"),
      v.maxValue(1000, "must be at most 1000"),
    ),
    "100",
  ),
  offset: v.optional(
    v.pipe(v.string(), v.regex(/^\d+$/, "must be a whole number"), v.transform(Number)),
    "0",
  ),
});

/** The query of `GET /health`. */
export const HealthQuerySchema = v.object({
  challenge: v.optional(
    v.pipe(v.string(), v.regex(CHALLENGE_PATTERN, "must be 22 to 128 base64url characters")),
  ),
});

/** The body of `POST /queue/:id/bounce`. */
export const BounceBodySchema = v.strictObject({
  reason: v.optional(
    v.pipe(
      v.string("must be text"),
      v.maxLength(200, "must be at most 200 characters"),
      v.regex(/^[\x20-\x7e]*$/, "must be printable ASCII"),
    ),
  ),
}, "must be a JSON object");

/** The body of a route that takes none: nothing, or `{}`. */
export const NoBodySchema = v.strictObject({}, "must be a JSON object");

/**
 * A 400 naming each field at fault, from valibot's issues. A strict
 * object reports two things with one issue type: a key it does not know
 * (expected "never") and an input that is no object at all.
 */
export function invalid(
  result: { success: boolean; issues?: unknown; target?: string },
  c: Context,
) {
  if (result.success) return;
  const whole = result.target === "json" ? "(body)" : "(request)";
  const issues = (result.issues as v.BaseIssue<unknown>[]).map((issue) => ({
    field: (issue.path ?? []).map((p) => String(p.key)).join(".") || whole,
    problem: issue.type === "strict_object" && issue.expected === "never"
      ? "is not a known field"
      : issue.message,
  }));
  return c.json({ error: "invalid request", issues }, 400);
}

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/;

/**
 * Reads the body as JSON and validates it with `schema`: an empty body is
 * `{}`; any other must say it is JSON (else 415) and parse (else 400). The
 * listener has already refused bodies over 64 KiB. The output is `body`.
 */
export function jsonBody<S extends v.GenericSchema>(schema: S) {
  return createMiddleware<{ Variables: { body: v.InferOutput<S> } }>(async (c, next) => {
    const text = await c.req.text();
    let value: unknown = {};
    if (text !== "") {
      const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (!JSON_TYPE.test(type)) {
        return c.json(
          { error: "a request body must be JSON (Content-Type: application/json)" },
          415,
        );
      }
      try {
        value = JSON.parse(text);
      } catch (err) {
        return c.json(
          { error: `the request body is not valid JSON: ${(err as Error).message}` },
          400,
        );
      }
    }
    // valibot's objects take arrays too (their indexes as keys).
    const result = v.safeParse(schema, Array.isArray(value) ? null : value);
    if (!result.success) return invalid({ ...result, target: "json" }, c);
    c.set("body", result.output);
    await next();
  });
}
