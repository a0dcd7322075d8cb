// compare: the library call and `greta compare` behind it. Loads no model code.
import { compareFiles, type CompareOptions, type CompareResult } from '../compare/compare.js';
import { timingSince, type Timing } from '../rss.js';
import { COMPARE_OPTIONS, inputFlags, inputSpecs, resolveCompareOptions, type CompareCommandOptions, type SameKeys } from '../spec.js';

export type CompareInput = CompareOptions;

export interface CompareOutput extends CompareResult {
  /** Not part of the comparison (`greta compare --json` leaves it out): --stats. */
  timing: Timing;
}

// The input names exactly the options that change the result (not how the CLI prints it).
const INPUT = inputSpecs(COMPARE_OPTIONS, 'json', 'stats');
true satisfies SameKeys<keyof CompareInput, keyof typeof INPUT>;

/** `greta compare BASE TEST`: every pair of two traces; exact for the same backend and model, else fp32 bounds. */
export function compare(base: string, test: string, input: CompareInput = {}): CompareOutput {
  return compareWith(base, test, resolveCompareOptions(inputFlags(input, INPUT)));
}

/** compare with options already resolved (the CLI's flags). */
export function compareWith(base: string, test: string, opts: Pick<CompareCommandOptions, 'tol' | 'tolPoint' | 'runs'>): CompareOutput {
  const t0 = performance.now();
  const r = compareFiles(base, test, { tol: opts.tol, tolPoint: opts.tolPoint, runs: opts.runs });
  return { ...r, timing: timingSince(t0) };
}
