// trace: the library call and `greta trace` behind it.
import { analyzeTrace, type ReportRow } from '../analyze/analyze.js';
import { closeRuns, readTraceFile } from '../analyze/load.js';
import { oracleVerdicts, type OracleVerdict } from '../analyze/oracle.js';
import { resolveTraceOptions, TRACE_OPTIONS, type TraceOptions } from '../options.js';
import { timingSince, type Timing } from '../rss.js';
import { planTrace, runTrace, type TraceRunOutput } from '../run.js';
import { inputFlags, inputSpecs, type List, type SameKeys } from '../spec.js';
import type { Point } from '../trace/points.js';
import type { KvCheckRecord } from '../trace/schema.js';

/** The options of `greta trace` (README, Trace options), typed; unset ones take the CLI's defaults. */
export interface TraceInput {
  prompt?: List;
  promptText?: string;
  promptFile?: string;
  exp?: List<'E1' | 'E0'>;
  model?: string;
  backend?: 'auto' | 'cpu' | 'cpu-fp64' | 'hip';
  steps?: number;
  out?: string;
  layers?: 'all' | List<number>;
  points?: List<Point | 'x_after_mlp' | 'final_rms'>;
  attnPipe?: boolean;
  heads?: 'all' | List<number>;
  phases?: List;
  oracle?: 'cpu-fp64';
  oracleTol?: number;
  kvCheck?: boolean;
  postWo?: boolean;
  debugInput?: boolean;
  topk?: number;
  /** NAME or NAME@LAYER (FAULT_NAMES). */
  fault?: string;
}

export interface TraceOutput extends TraceRunOutput {
  /** The analysis: one row per prompt and experiment. */
  rows: ReportRow[];
  kvChecks: KvCheckRecord[];
  /** With `oracle`: which side departed from fp64 at the first mismatch. */
  oracle: OracleVerdict[];
  /** The run: loading the model, tracing, the oracle's run; not reading the trace back. */
  timing: Timing;
}

// The input names exactly the options that change the run (not how the CLI prints it).
const INPUT = inputSpecs(TRACE_OPTIONS, 'json');
true satisfies SameKeys<keyof TraceInput, keyof typeof INPUT>;

/**
 * `greta trace`: runs prefill and decode on our kernels, writes the trace and
 * returns its analysis; `log` gets the progress lines the CLI prints on
 * stderr. Environment variables are not read: what is not given takes the
 * CLI's default.
 */
export function trace(input: TraceInput = {}, log?: (line: string) => void): TraceOutput {
  return traceWith(resolveTraceOptions(inputFlags(input, INPUT), {}), log);
}

/** trace with options already resolved (the CLI's flags and environment). */
export function traceWith(opts: TraceOptions, log: (line: string) => void = () => {}): TraceOutput {
  const plan = planTrace(opts);
  const t0 = performance.now();
  const run = runTrace(plan, log);
  const timing = timingSince(t0);
  // Only this run's records (and its oracle's): the file may hold many earlier runs.
  const runs = readTraceFile(run.out, (h) => h.run_id === run.runId || h.options.oracle_for === run.runId).runs;
  try {
    const rows = analyzeTrace(runs);
    return {
      ...run,
      rows,
      kvChecks: runs.flatMap((r) => r.kvChecks),
      oracle: oracleVerdicts(runs, rows, opts.oracleTol),
      timing,
    };
  } finally {
    closeRuns(runs);
  }
}
