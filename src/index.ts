// The library: what the CLI does, as typed functions. Options are the CLI's,
// typed (arrays, numbers, booleans), and go through the same zod schemas, so
// a bad value is the same UsageError naming it and what is allowed. Every
// device buffer and file a call opens is released before it returns.
import { analyzeFiles, analyzeTrace, type Analysis, type ReportRow } from './analyze/analyze.js';
import { readTraceFile } from './analyze/load.js';
import { analysisOracle, DEFAULT_ORACLE_BOUND, oracleVerdicts, type OracleVerdict } from './analyze/oracle.js';
import { compareFiles, type CompareOptions, type CompareResult } from './compare/compare.js';
import { resolveReportOptions, resolveSelftestOptions, resolveTraceOptions } from './options.js';
import type { ReportData, ReportSection } from './report/data.js';
import { writeReport, type ReportOutput } from './report/report.js';
import { planTrace, runTrace } from './run.js';
import { runSelftest, type SelftestResult } from './selftest.js';
import type { Point } from './trace/points.js';
import type { KvCheckRecord, RunResult } from './trace/schema.js';

export { UsageError } from './errors.js';
export { FAULT_NAMES, type FaultName } from './faults.js';
export { POINTS, STAGE_POINTS, type Point } from './trace/points.js';
export type { Analysis, CompareOptions, CompareResult, KvCheckRecord, OracleVerdict, ReportData, ReportOutput, ReportRow, ReportSection, RunResult, SelftestResult };

type List<T extends string | number = string> = T | readonly T[];

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

export interface TraceOutput {
  /** The JSONL file written (rows beside it in `.rows.bin`). */
  out: string;
  runId: string;
  /** Top-1s, generated text and timings of each prompt and experiment. */
  results: RunResult[];
  /** The analysis: one row per prompt and experiment. */
  rows: ReportRow[];
  kvChecks: KvCheckRecord[];
  /** With `oracle`: which side departed from fp64 at the first mismatch. */
  oracle: OracleVerdict[];
}

/** Flags as the CLI's parser would hand them over: strings and booleans. */
function flags<T extends object>(input: T, names: Record<string, string>): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    const flag = names[key];
    if (flag === undefined) throw new TypeError(`unknown option '${key}' (allowed: ${Object.keys(names).join(', ')})`);
    out[flag] = typeof value === 'boolean' ? value : Array.isArray(value) ? value.join(',') : String(value);
  }
  return out;
}

const TRACE_FLAGS: Record<keyof TraceInput, string> = {
  prompt: 'prompt',
  promptText: 'prompt-text',
  promptFile: 'prompt-file',
  exp: 'exp',
  model: 'model',
  backend: 'backend',
  steps: 'steps',
  out: 'out',
  layers: 'layers',
  points: 'points',
  attnPipe: 'attn-pipe',
  heads: 'heads',
  phases: 'phases',
  oracle: 'oracle',
  oracleTol: 'oracle-tol',
  kvCheck: 'kv-check',
  postWo: 'post-wo',
  debugInput: 'debug-input',
  topk: 'topk',
  fault: 'fault',
};

/**
 * `greta trace`: runs prefill and decode on our kernels, writes the trace and
 * returns its analysis. Environment variables are not read: what is not given
 * takes the CLI's default.
 */
export function trace(input: TraceInput = {}): TraceOutput {
  const f = flags(input, TRACE_FLAGS);
  const opts = resolveTraceOptions(f, {});
  const run = runTrace(planTrace(opts, { prompt: input.prompt !== undefined }));
  const runs = readTraceFile(run.out, (h) => h.run_id === run.runId || h.options.oracle_for === run.runId).runs;
  const rows = analyzeTrace(runs);
  return {
    out: run.out,
    runId: run.runId,
    results: run.results,
    rows,
    kvChecks: runs.flatMap((r) => r.kvChecks),
    oracle: oracleVerdicts(runs, rows, opts.oracleTol),
  };
}

export interface AnalyzeInput {
  /** A pair mismatches when its MAE exceeds tol; 0 (default): any bit. */
  tol?: number;
  /** Relative L2 to an oracle run beyond which a phase departed (default 1e-4). */
  oracleTol?: number;
}

/** `greta analyze`: streams the files; rows of unfinished runs are INCOMPLETE or NO_DATA, never NONE. */
export function analyze(files: List, input: AnalyzeInput = {}): Analysis & { oracle: OracleVerdict[] } {
  const paths = typeof files === 'string' ? [files] : [...files];
  const a = analyzeFiles(paths, { tol: input.tol ?? 0 });
  return { ...a, oracle: analysisOracle(a, input.tol ?? 0, input.oracleTol ?? DEFAULT_ORACLE_BOUND) };
}

/** `greta compare BASE TEST`: every pair of two traces; exact for the same backend and model, else fp32 bounds. */
export function compare(base: string, test: string, input: CompareOptions = {}): CompareResult {
  return compareFiles(base, test, input);
}

export interface ReportInput {
  /** The HTML file to write (.html or .htm; default report.html). */
  out?: string;
  /** A BASE trace: the page also shows each file compared with it, as `compare(base, file)`. */
  compare?: string;
  /** As analyze's tol: a pair mismatches when its MAE exceeds it; 0 (default): any bit. */
  tol?: number;
  /** Relative L2 to an oracle run beyond which a phase departed (default 1e-4). */
  oracleTol?: number;
}

/**
 * `greta report`: one self-contained HTML page of the files' analysis (what
 * `analyze` returns, drawn), written to `out`; returns what the page shows.
 */
export function report(files: List, input: ReportInput = {}): ReportOutput {
  const paths = typeof files === 'string' ? [files] : [...files];
  const names = { out: 'out', compare: 'compare', tol: 'tol', oracleTol: 'oracle-tol' };
  return writeReport(paths, resolveReportOptions(flags(input, names)));
}

export interface SelftestInput {
  faults?: 'all' | List;
  faultLayers?: 'default' | List<number>;
  prompt?: List;
  points?: List<Point>;
  model?: string;
  backend?: TraceInput['backend'];
  out?: string;
}

/** `greta selftest`: every planted fault must be found exactly where it was planted. */
export function selftest(input: SelftestInput = {}): SelftestResult {
  const names = { faults: 'faults', faultLayers: 'fault-layers', prompt: 'prompt', points: 'points', model: 'model', backend: 'backend', out: 'out' };
  return runSelftest(resolveSelftestOptions(flags(input, names), {}));
}
