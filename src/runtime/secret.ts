/**
 * Reading a secret (a password) for the command line: from a terminal
 * with the echo off, or the first line of standard input when it is not a
 * terminal (`echo "$PW" | postern user add …`). Never from the arguments,
 * which other users can see in the process list.
 *
 * @module
 */

import process from "node:process";

/** Reads one line from standard input; on a terminal, prompts without echoing it. */
export function readSecret(prompt: string): Promise<string> {
  const input = process.stdin;
  return new Promise((resolve, reject) => {
    let text = "";
    const tty = input.isTTY === true;
    if (tty) {
      process.stderr.write(prompt);
      input.setRawMode(true);
    }
    input.setEncoding("utf8");
    const finish = (error?: Error) => {
      input.off("data", onData);
      input.off("end", onEnd);
      if (tty) {
        input.setRawMode(false);
        process.stderr.write("\n");
      }
      input.pause();
      if (error) reject(error);
      else resolve(text);
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === "\n" || char === "\r") return finish();
        // Ctrl-C and Ctrl-D on a raw terminal.
        if (tty && char === "\u0003") return finish(new Error("cancelled"));
        if (tty && char === "\u0004") return finish();
        if (tty && (char === "\u007f" || char === "\b")) {
          text = text.slice(0, -1);
          continue;
        }
        text += char;
      }
    };
    const onEnd = () => finish();
    input.on("data", onData);
    input.on("end", onEnd);
    input.resume();
  });
}
