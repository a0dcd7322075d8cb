/** Bad input from the user: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Formats a list of allowed values for an error message. */
export function allowed(values: readonly (string | number)[]): string {
  return `allowed: ${values.join(', ')}`;
}
