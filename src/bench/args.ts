// What the bench commands share: their option parsing (bad input is one line
// and exit 2, --help prints and exits 0) and the median they report.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BACKEND_KINDS, resolveBackendKind, type BackendKind } from '../native.js';

export function usage(message: string): never {
  console.error(`gretacore: ${message}`);
  process.exit(2);
}

/** The parsed flags of `command`; exits after printing `help` when --help is given. */
export function parseBenchArgs(command: string, options: NonNullable<ParseArgsConfig['options']>, help: string) {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean' } }, strict: true }));
  } catch (e) {
    usage(`${command}: ${(e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, '')} (see --help)`);
  }
  if (values.help) {
    console.log(help);
    process.exit(0);
  }
  return values;
}

/** --backend: auto or a backend kind, resolved. */
export function backendArg(value: string): BackendKind {
  if (value !== 'auto' && !(BACKEND_KINDS as readonly string[]).includes(value)) {
    usage(`--backend: unknown backend '${value}' (allowed: auto, ${BACKEND_KINDS.join(', ')})`);
  }
  return resolveBackendKind(value as BackendKind | 'auto');
}

/** An integer flag of at least `min`. */
export function intArg(flag: string, value: string, min: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min) usage(`--${flag}: '${value}' is not an integer >= ${min}`);
  return Number(value);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
