/**
 * Submission logins checked by Dovecot's auth service (auth.dovecot)
 * instead of the users files, so that users are kept in one place.
 *
 * @module
 */

import type { RecipientResolver } from "../aliases/mod.ts";
import type { DovecotAuth } from "../users/dovecot_auth.ts";
import type { LoginAttempt, LoginResult } from "./login.ts";
import { reply } from "./reply.ts";

/** RFC 4954 section 6: 535 5.7.8 for bad credentials. */
const BAD_CREDENTIALS = reply(535, "5.7.8", "Authentication credentials invalid");
/**
 * RFC 4954 section 6: 454 4.7.0, a temporary failure: the password could
 * not be checked, which is never a success.
 */
const UNAVAILABLE = reply(454, "4.7.0", "Temporary authentication failure, try again later");

/**
 * Asks Dovecot about `attempt`. Wrong credentials are `bad_credentials`
 * (counted by the caller); Dovecot unreachable, or unable to decide, is
 * `auth_unavailable` with 454, which the client may retry.
 */
export async function loginWithDovecot(
  dovecot: DovecotAuth,
  attempt: LoginAttempt,
  resolver: RecipientResolver,
  onError?: (err: unknown) => void,
): Promise<LoginResult> {
  // RFC 4616 section 2: NUL separates the fields of PLAIN, so it can be in
  // neither (a LOGIN client could send one).
  if (attempt.username.includes("\0") || attempt.password.includes("\0")) {
    return { refusal: BAD_CREDENTIALS, reason: "bad_credentials" };
  }
  let answer;
  try {
    answer = await dovecot.login(attempt.username, attempt.password, { remoteIp: attempt.ip });
  } catch (err) {
    onError?.(err);
    return { refusal: UNAVAILABLE, reason: "auth_unavailable" };
  }
  switch (answer.result) {
    case "ok":
      // The name Dovecot knows the user by; an address takes the lookup form
      // Postern's own logins have.
      return { user: answer.user.includes("@") ? resolver.normalize(answer.user) : answer.user };
    case "fail":
      return { refusal: BAD_CREDENTIALS, reason: "bad_credentials" };
    case "temporary":
      onError?.(new Error(`Dovecot could not check the password: ${answer.reason}`));
      return { refusal: UNAVAILABLE, reason: "auth_unavailable" };
  }
}
