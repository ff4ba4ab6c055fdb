/**
 * Parser for chasquid-compatible `aliases` files:
 *
 * ```text
 * # comment
 * pepe: jose                  # same domain
 * flowers: rose@backgarden, lilly@pond
 * tubo: | /usr/local/bin/filter --to tubo
 * *: catchall                 # any user that does not exist
 * ```
 *
 * Names are case-insensitive; a target without a domain is in the file's
 * domain. A pipe target is split on white space and run without a shell.
 *
 * @module
 */

/** Where an alias sends mail. */
export type AliasTarget =
  | { kind: "address"; address: string }
  | { kind: "pipe"; argv: string[] };

/** Alias name (lower case local part, or `*`) → targets. */
export type AliasTable = ReadonlyMap<string, readonly AliasTarget[]>;

/** A line of an aliases file that cannot be parsed. */
export class AliasSyntaxError extends SyntaxError {
  /** 1-based line number. */
  readonly line: number;

  /** Creates the error for `line`. */
  constructor(line: number, message: string) {
    super(message);
    this.name = "AliasSyntaxError";
    this.line = line;
  }
}

/**
 * Parses the text of the aliases file of `domain`.
 *
 * @throws {AliasSyntaxError} naming the line of the first bad entry.
 */
export function parseAliases(text: string, domain: string): AliasTable {
  const table = new Map<string, AliasTarget[]>();
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const lineNumber = index + 1;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new AliasSyntaxError(lineNumber, `Cannot parse alias line: expected "name: target, …"`);
    }
    const name = line.slice(0, colon).trim().toLowerCase();
    if (/[\s,@]/.test(name)) {
      throw new AliasSyntaxError(
        lineNumber,
        `Cannot parse alias name "${name}": names have no domain, spaces or commas`,
      );
    }
    const rhs = line.slice(colon + 1).trim();
    if (rhs === "") {
      throw new AliasSyntaxError(lineNumber, `Alias "${name}" has no targets`);
    }
    if (table.has(name)) {
      throw new AliasSyntaxError(lineNumber, `Alias "${name}" is defined twice`);
    }
    table.set(name, parseTargets(rhs, domain, lineNumber));
  }
  return table;
}

/**
 * Parses the right-hand side of an alias line. Exported because the
 * alias-resolve hook's output has the same form.
 */
export function parseTargets(rhs: string, domain: string, lineNumber = 1): AliasTarget[] {
  const trimmed = rhs.trim();
  if (trimmed.startsWith("|")) {
    const argv = trimmed.slice(1).trim().split(/\s+/).filter((w) => w !== "");
    if (argv.length === 0) {
      throw new AliasSyntaxError(lineNumber, "Pipe alias has no command");
    }
    return [{ kind: "pipe", argv }];
  }
  const targets: AliasTarget[] = [];
  for (const part of trimmed.split(",")) {
    const address = part.trim();
    if (address === "") continue;
    if (/\s/.test(address) || address.startsWith("@") || address.endsWith("@")) {
      throw new AliasSyntaxError(lineNumber, `Cannot parse alias target "${address}"`);
    }
    targets.push({
      kind: "address",
      address: address.includes("@") ? address : `${address}@${domain}`,
    });
  }
  if (targets.length === 0) {
    throw new AliasSyntaxError(lineNumber, "Alias has no targets");
  }
  return targets;
}
