// analyze: the library call and `greta analyze` behind it. Loads no model code.
import { analysisExitCode, analyzeFiles, type Analysis } from '../analyze/analyze.js';
import { analysisOracle, type OracleVerdict } from '../analyze/oracle.js';
import { UsageError } from '../errors.js';
import { timingSince, type Timing } from '../rss.js';
import { ANALYZE_OPTIONS, fileList, inputFlags, inputSpecs, resolveAnalyzeOptions, type AnalyzeCommandOptions, type List, type SameKeys } from '../spec.js';

export interface AnalyzeInput {
  /** A pair mismatches when its MAE exceeds tol; 0 (default): any bit. */
  tol?: number;
  /** Relative L2 to an oracle run beyond which a phase departed (default 1e-4). */
  oracleTol?: number;
}

export interface AnalyzeOutput extends Analysis {
  /** With oracle runs (--oracle): which side departed from fp64 at each first mismatch. */
  oracle: OracleVerdict[];
  /** ANALYZE_EXIT: 0 every row a real comparison, 3 a row INCOMPLETE or NO_DATA or a line cut short. */
  exit: number;
  timing: Timing;
}

// The input names exactly the options that change the result (not how the CLI prints it).
const INPUT = inputSpecs(ANALYZE_OPTIONS, 'json', 'stats');
true satisfies SameKeys<keyof AnalyzeInput, keyof typeof INPUT>;

/** `greta analyze`: streams the files; rows of unfinished runs are INCOMPLETE or NO_DATA, never NONE. */
export function analyze(files: List, input: AnalyzeInput = {}): AnalyzeOutput {
  return analyzeWith(fileList(files), resolveAnalyzeOptions(inputFlags(input, INPUT)));
}

/** analyze with options already resolved (the CLI's flags). */
export function analyzeWith(files: string[], opts: Pick<AnalyzeCommandOptions, 'tol' | 'oracleTol'>): AnalyzeOutput {
  const t0 = performance.now();
  if (files.length === 0) throw new UsageError('analyze: give at least one trace .jsonl file');
  const a = analyzeFiles(files, { tol: opts.tol });
  if (a.rows.length === 0 && a.problems.length === 0) throw new UsageError(`analyze: no runs in ${files.join(', ')}`);
  const oracle = analysisOracle(a, opts.tol, opts.oracleTol);
  return { ...a, oracle, exit: analysisExitCode(a), timing: timingSince(t0) };
}
