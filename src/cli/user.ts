/**
 * `postern user add|remove|list`: manages the submission users of a
 * domain in the configuration directory.
 *
 * @module
 */

import { resolve } from "node:path";
import * as runtime from "../runtime/mod.ts";
import { hashPassword, listUsers, removeUser, setUser, splitAddress } from "../users/mod.ts";

/**
 * `postern user add|remove|list`: edits `domains/<domain>/users`. The
 * password comes from a prompt (no echo) or standard input, never from the
 * command line; a running server picks the change up by itself.
 */
export async function userCommand(words: string[], configDir: string | undefined): Promise<number> {
  const [action, target] = words;
  if (
    configDir === undefined || target === undefined ||
    !["add", "remove", "list"].includes(action ?? "")
  ) {
    runtime.writeStderr(
      "postern: usage: postern user add|remove USER@DOMAIN --config DIR\n" +
        "                postern user list DOMAIN --config DIR\n",
    );
    return 2;
  }
  const dir = resolve(configDir);
  try {
    if (action === "list") {
      for (const user of await listUsers(dir, target)) {
        runtime.writeStdout(
          `${user.name}@${target.toLowerCase()}  ${
            user.canLogIn ? "can log in" : "mailbox only"
          }\n`,
        );
      }
      return 0;
    }
    if (action === "remove") {
      if (await removeUser(dir, target)) return 0;
      runtime.writeStderr(`postern: no user ${target}\n`);
      return 1;
    }
    splitAddress(target);
    const password = await runtime.readSecret(`Password for ${target}: `);
    if (password === "") {
      runtime.writeStderr("postern: empty password; nothing changed\n");
      return 1;
    }
    const added = await setUser(dir, target, await hashPassword(password));
    runtime.writeStdout(`${added ? "added" : "changed the password of"} ${target}\n`);
    return 0;
  } catch (err) {
    runtime.writeStderr(`postern: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
