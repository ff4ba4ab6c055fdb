/**
 * Submission users: scrypt password hashes and the `users` files that hold
 * them.
 *
 * @module
 */

export { hashPassword, isPasswordHash, verifyPassword } from "./password.ts";
export { listUsers, parseUserLine, removeUser, setUser, splitAddress } from "./users_file.ts";
export type { UserEntry } from "./users_file.ts";
