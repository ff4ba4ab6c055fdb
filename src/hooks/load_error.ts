/**
 * What of a hook's load error may go to a log: its first line and where in
 * the hook's files it happened. Not the rest: deno prints a code frame
 * under a syntax error that quotes the hook's source, and a secret written
 * in a hook must not reach the log because the hook failed to load.
 *
 * @module
 */

/** The worker's bootstrap, which loads the hook: its frames say nothing of the hook. */
const BOOTSTRAP = /\/hook_worker\.js$/;

/** The end of a stack frame: `:line:column`, then `)` when the frame names a function. */
const FRAME_END = /:(\d+):(\d+)\)?\s*$/;

/**
 * The first line of a load error, and ` at file:///…:line:column` when a
 * stack frame names a place in the hook's files.
 */
export function loadErrorSummary(error: string): string {
  const first = plainText(error).split("\n")[0] ?? "";
  const where = hookFrame(error);
  return where === undefined ? first : `${first} at ${where}`;
}

/**
 * The location of a load error in the hook's files: the first stack frame
 * (`at [async] [name (]file:///…:line:column[)]`) in a local file other
 * than the bootstrap. Only that: the lines before it may be a code frame
 * quoting the hook's source.
 */
export function hookFrame(error: string): string | undefined {
  for (const line of plainText(error).split("\n").slice(1)) {
    if (!/^\s*at /.test(line)) continue;
    const end = FRAME_END.exec(line);
    const start = end === null ? -1 : line.lastIndexOf("file://", end.index);
    if (end === null || start < 0) continue;
    const url = line.slice(start, end.index);
    if (!/[\s()]/.test(url) && !BOOTSTRAP.test(url)) return `${url}:${end[1]}:${end[2]}`;
  }
  return undefined;
}

/** `text` without terminal colour codes, which deno adds to some locations. */
export function plainText(text: string): string {
  // deno-lint-ignore no-control-regex -- ESC is what is removed
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}
