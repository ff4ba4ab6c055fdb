/**
 * Files that `bun build --compile` embedded in the running executable
 * (`Bun.embeddedFiles`). Source runs and `deno compile` binaries have none.
 * Nothing is read until a caller reads the returned blob.
 *
 * @module
 */

/** A file embedded in the executable; reading it is up to the caller. */
export interface EmbeddedFile {
  name: string;
  size: number;
  /** The file's bytes as a stream. */
  stream(): ReadableStream<Uint8Array>;
  /** The file's bytes as UTF-8 text. */
  text(): Promise<string>;
}

/**
 * The embedded file named `name` (as given to the build, without Bun's
 * content hash: the build names assets `[name].[ext]`), or undefined.
 */
export function embeddedFile(name: string): EmbeddedFile | undefined {
  const bun = (globalThis as { Bun?: { embeddedFiles?: ReadonlyArray<Blob & { name?: string }> } })
    .Bun;
  const blob = bun?.embeddedFiles?.find((file) => file.name === name);
  if (blob === undefined) return undefined;
  return {
    name,
    size: blob.size,
    stream: () => blob.stream() as ReadableStream<Uint8Array>,
    text: () => blob.text(),
  };
}
