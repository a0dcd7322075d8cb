// What the bench commands share: their options, each a spec (flag, default,
// help) checked by one zod schema through spec.ts's resolver, as every
// command's are (bad input is one line and exit 2, --help prints and exits
// 0), and the median they report.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { resolveWith, type OptionSpec } from '../spec.js';

function usage(message: string): never {
  console.error(`gretacore: ${message}`);
  process.exit(2);
}

/**
 * The options of `command` from its command line: flags as `specs` name them,
 * validated by `schema`. Prints `help` and exits 0 for --help; a bad flag or
 * value is one line naming it and exit 2.
 */
export function parseBenchOptions<T>(
  command: string,
  specs: Record<string, OptionSpec>,
  schema: z.ZodType<T>,
  help: string,
): T {
  const options = Object.fromEntries(Object.values(specs).map((o) => [o.flag, { type: o.type }]));
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
  try {
    return resolveWith(specs, schema, values, {}).opts;
  } catch (e) {
    if (e instanceof UsageError) usage(e.message);
    throw e;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
