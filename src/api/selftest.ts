// selftest: the library call and `greta selftest` behind it.
import { resolveSelftestOptions, SELFTEST_OPTIONS } from '../options.js';
import { runSelftest, type SelftestResult } from '../selftest.js';
import { inputFlags, inputSpecs, type List, type SameKeys } from '../spec.js';
import type { Point } from '../trace/points.js';
import type { TraceInput } from './trace.js';

export interface SelftestInput {
  faults?: 'all' | List;
  faultLayers?: 'default' | List<number>;
  prompt?: List;
  model?: string;
  backend?: TraceInput['backend'];
  points?: List<Point>;
  out?: string;
}

// The input names exactly the options that change the result (not how the CLI prints it).
const INPUT = inputSpecs(SELFTEST_OPTIONS, 'list', 'json');
true satisfies SameKeys<keyof SelftestInput, keyof typeof INPUT>;

/** `greta selftest`: every planted fault must be found exactly where it was planted. `log` gets the progress lines. */
export function selftest(input: SelftestInput = {}, log?: (line: string) => void): SelftestResult {
  return runSelftest(resolveSelftestOptions(inputFlags(input, INPUT), {}), log);
}

// With options already resolved (the CLI's flags and environment); `greta selftest --list`.
export { runSelftest as selftestWith, listFaults as faults } from '../selftest.js';
