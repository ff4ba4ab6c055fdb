/**
 * Couriers that deliver queued mail. Local delivery: Maildir or LMTP,
 * aliases and pipe commands.
 *
 * @module
 */

export { DispatchCourier, type RemoteDelivery } from "./dispatch.ts";
export { crlfToLf } from "./line_endings.ts";
export { LmtpCourier } from "./lmtp.ts";
export type { LmtpOptions, LmtpResults } from "./lmtp.ts";
export { LocalCourier } from "./local.ts";
export type { LocalCourierOptions } from "./local.ts";
export { isPermanentFsError, mailboxDirName, Maildir } from "./maildir.ts";
export { deliverToPipe } from "./pipe.ts";
