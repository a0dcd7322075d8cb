/**
 * The one error every loader of an untrusted weight file throws: the file, where in it (a tensor
 * name, a metadata key, a header field; null when the whole file is meant) and what is wrong.
 */
export class LoaderError extends Error {
  override readonly name = 'LoaderError';
  readonly code = 'EBADFILE';
  constructor(readonly file: string, readonly where: string | null, readonly what: string) {
    super(`${file}${where ? `: ${where}` : ''}: ${what}`);
  }
}
