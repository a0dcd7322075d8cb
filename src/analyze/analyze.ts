// The analyzer: pairs prefill_last with decode0 per (layer, point[, head]),
// measures their difference on the full rows, finds the first mismatch in
// forward order and reports top-1s and collapse, as in the StageTrace reports.
// A row that is not a real comparison (its run did not finish, or one phase is
// missing) says so: INCOMPLETE or NO_DATA, never NONE.
import { UsageError } from '../errors.js';
import { forwardOrder, POINTS, type Point } from '../trace/points.js';
import { ExpSchema, type Exp, type KvCheckRecord, type StageRecord } from '../trace/schema.js';
import { compareRows, fmt, type RowMetrics } from './metrics.js';
import { closeRuns, headOf, RowBuffer, streamTraceFile, type TraceRun } from './load.js';

// The two rows of the pair being compared; reused for every pair.
const ROW_A = new RowBuffer();
const ROW_B = new RowBuffer();

export { compareRows } from './metrics.js';

export const BASE_PHASE = 'prefill_last';
export const TEST_PHASE = 'decode0';

/** Exit codes of `greta analyze`. */
export const ANALYZE_EXIT = {
  /** Every row is a real comparison (NONE or a first mismatch). */
  ok: 0,
  badInput: 2,
  /** Some row is INCOMPLETE or NO_DATA, or a line was cut short: the answer is not a whole one. */
  notCompared: 3,
} as const;

export interface PhaseSide {
  hash: string;
  token_id: number;
  token_index: number;
  pos_id: number;
  seq_len: number;
}

export interface Comparison {
  layer: number | null;
  point: Point;
  /** The attention head of a per-head point, else null. */
  head: number | null;
  equal: boolean;
  mae: number;
  max_abs: number;
  rel_l2: number;
  /** Row widths when they differ (a decode row attending to another number of keys); the metrics are then infinite. */
  widths?: { prefill_last: number; decode0: number };
  prefill_last: PhaseSide;
  decode0: PhaseSide;
}

/** compared: a real comparison; incomplete: the run did not finish; no_data: nothing to pair. */
export type RowStatus = 'compared' | 'incomplete' | 'no_data';

/** One row of the report: a run, prompt and experiment, compared or not. */
export interface ReportRow {
  run_id: string;
  model: string;
  backend: string;
  /** The fault planted in the run (--fault), or null. */
  fault: string | null;
  prompt: string;
  exp: Exp;
  status: RowStatus;
  /** Why the row is not a real comparison (status incomplete or no_data), else null. */
  reason: string | null;
  first_mismatch_stage: Point | 'NONE' | 'INCOMPLETE' | 'NO_DATA';
  first_mismatch_layer: number | null;
  first_mismatch: { head: number | null; mae: number; max_abs: number; rel_l2: number } | null;
  /** `<point>_mae`: at the first mismatch layer (the first traced layer when none); the worst head of a per-head point. */
  point_mae: Partial<Record<Point, number>>;
  prefill_last_top1: number | null;
  decode0_top1: number | null;
  collapse: boolean;
  collapse_token: number | null;
  /** (layer, point) seen in only one of the two phases. */
  unpaired: string[];
  comparisons: Comparison[];
}

/** A row that is a real comparison: the first mismatch, or NONE. */
export interface AnalysisRow extends ReportRow {
  status: 'compared';
  reason: null;
  first_mismatch_stage: Point | 'NONE';
}

export function isCompared(r: ReportRow): r is AnalysisRow {
  return r.status === 'compared';
}

export interface AnalyzeOptions {
  /** A pair mismatches when its MAE exceeds tol; with 0, any bit difference counts. */
  tol: number;
}

export interface AnalyzeStats {
  files: number;
  /** Bytes and lines of JSONL read. */
  bytes: number;
  lines: number;
  runs: number;
  records: number;
  pairs: number;
  rows_read: number;
  row_bytes_read: number;
}

export interface Analysis {
  rows: ReportRow[];
  /** Problems outside any row (a line cut short that belongs to no run): each names its file and line. */
  problems: string[];
  stats: AnalyzeStats;
  /** The runs' KV cache verdicts (--kv-check). */
  kvChecks: KvCheckRecord[];
  /** Per file, the ids of runs that have an oracle run (--oracle) in it. */
  oracled: Map<string, Set<string>>;
}

function side(r: StageRecord): PhaseSide {
  return { hash: r.hash, token_id: r.token_id, token_index: r.token_index, pos_id: r.pos_id, seq_len: r.seq_len };
}

const keyOf = (layer: number | null, point: Point, head: number | null) => `${layer ?? 'final'}:${point}${head === null ? '' : `:h${head}`}`;
const pairKey = (r: StageRecord) => keyOf(r.layer, r.point, headOf(r));

function top1Of(run: TraceRun, logits: StageRecord | undefined, prompt: string, exp: Exp, phase: string): number | null {
  if (logits?.topk) return logits.topk.ids[0] ?? null;
  const res = run.end?.results.find((r) => r.prompt === prompt && r.exp === exp);
  if (!res) return null;
  if (phase === BASE_PHASE) return res.prefill_last_top1;
  return res.decode_top1[Number(phase.slice('decode'.length))] ?? null;
}

/** Why a run's rows are not whole comparisons, or null when it finished. */
function unfinished(run: TraceRun): string | null {
  if (run.end) return null;
  const cut = run.cutLine === undefined ? '' : `; ${run.file}:${run.cutLine} is cut short`;
  return `run ${run.header.run_id} in ${run.file} has no end record: it did not finish${cut}`;
}

interface Group {
  prompt: string;
  exp: Exp;
  base: Map<string, StageRecord>;
  test: Map<string, StageRecord>;
  records: number;
}

/** The (prompt, exp) groups of a run: those its header promises, then any others its records hold. */
function groups(run: TraceRun): Group[] {
  const out = new Map<string, Group>();
  const add = (prompt: string, exp: Exp) => {
    const k = `${prompt}\u0000${exp}`;
    let g = out.get(k);
    if (!g) out.set(k, (g = { prompt, exp, base: new Map(), test: new Map(), records: 0 }));
    return g;
  };
  const exps = Array.isArray(run.header.options.exp) ? run.header.options.exp.filter((e) => ExpSchema.safeParse(e).success) : [];
  for (const p of run.header.prompts) for (const e of exps as Exp[]) add(p.name, e);
  for (const s of run.stages) {
    const g = add(s.prompt, s.exp);
    g.records++;
    if (s.phase === BASE_PHASE) g.base.set(pairKey(s), s);
    else if (s.phase === TEST_PHASE) g.test.set(pairKey(s), s);
  }
  return [...out.values()];
}

function analyzeOne(run: TraceRun, g: Group, opts: AnalyzeOptions): ReportRow {
  const nLayers = Number(run.header.config.num_hidden_layers ?? 0);
  const { base, test, prompt, exp } = g;
  const unpaired = [...base.keys()].filter((k) => !test.has(k)).concat([...test.keys()].filter((k) => !base.has(k)));

  const comparisons: Comparison[] = [];
  for (const [k, a] of base) {
    const b = test.get(k);
    if (!b) continue;
    const width = (r: StageRecord) => r.shape.reduce((x, y) => x * y, 1);
    const [wa, wb] = [width(a), width(b)];
    // Two rows at a time: read, measure, drop. Rows of different widths differ by shape alone.
    const m: RowMetrics =
      wa === wb ? compareRows(run.rows.readInto(a, ROW_A), run.rows.readInto(b, ROW_B)) : { mae: Infinity, max_abs: Infinity, rel_l2: Infinity, cosine: 0 };
    const equal = wa === wb && (opts.tol === 0 ? a.hash === b.hash && m.max_abs === 0 : m.mae <= opts.tol);
    comparisons.push({
      layer: a.layer, point: a.point, head: headOf(a), equal, mae: m.mae, max_abs: m.max_abs, rel_l2: m.rel_l2,
      ...(wa !== wb ? { widths: { prefill_last: wa, decode0: wb } } : {}),
      prefill_last: side(a), decode0: side(b),
    });
  }
  comparisons.sort(
    (x, y) => forwardOrder(x.layer, x.point, nLayers) - forwardOrder(y.layer, y.point, nLayers) || (x.head ?? -1) - (y.head ?? -1),
  );

  let status: RowStatus = 'compared';
  let reason = unfinished(run);
  if (reason !== null) status = 'incomplete';
  else if (comparisons.length === 0) {
    status = 'no_data';
    reason =
      g.records === 0 ? 'no stage records'
      : base.size === 0 ? `no ${BASE_PHASE} records`
      : test.size === 0 ? `no ${TEST_PHASE} records`
      : `${BASE_PHASE} and ${TEST_PHASE} share no (layer, point)`;
  }

  const first = status === 'compared' ? comparisons.find((c) => !c.equal) : undefined;
  const point_mae: Partial<Record<Point, number>> = {};
  if (status === 'compared') {
    const layers = comparisons.filter((c) => c.layer !== null).map((c) => c.layer!);
    const maeLayer = first?.layer ?? (layers.length ? Math.min(...layers) : null);
    for (const c of comparisons) {
      if (c.layer !== null && c.layer !== maeLayer) continue;
      point_mae[c.point] = Math.max(point_mae[c.point] ?? 0, c.mae);
    }
  }
  const logits = (phase: string) => (phase === BASE_PHASE ? base : test).get(keyOf(null, 'logits', null));
  return {
    run_id: run.header.run_id,
    model: run.header.model.name,
    backend: run.header.backend,
    fault: typeof run.header.options.fault === 'string' ? run.header.options.fault : null,
    prompt,
    exp,
    status,
    reason,
    first_mismatch_stage: status === 'incomplete' ? 'INCOMPLETE' : status === 'no_data' ? 'NO_DATA' : first ? first.point : 'NONE',
    first_mismatch_layer: first ? first.layer : null,
    first_mismatch: first ? { head: first.head, mae: first.mae, max_abs: first.max_abs, rel_l2: first.rel_l2 } : null,
    point_mae,
    prefill_last_top1: top1Of(run, logits(BASE_PHASE), prompt, exp, BASE_PHASE),
    decode0_top1: top1Of(run, logits(TEST_PHASE), prompt, exp, TEST_PHASE),
    collapse: false,
    collapse_token: null,
    unpaired,
    comparisons,
  };
}

/**
 * Collapse: decode0 gives the same top-1 for prompts whose prefill_last top-1s
 * differ (the symptom of a decode path that ignores its context). Judged among
 * rows of the same model, backend and experiment.
 */
function markCollapse(rows: ReportRow[]): void {
  const groups = new Map<string, ReportRow[]>();
  for (const r of rows) {
    if (r.decode0_top1 === null) continue;
    const k = `${r.model}|${r.backend}|${r.exp}|${r.decode0_top1}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const g of groups.values()) {
    const prefillTop1s = new Set(g.map((r) => r.prefill_last_top1));
    if (new Set(g.map((r) => r.prompt)).size >= 2 && prefillTop1s.size >= 2) {
      for (const r of g) {
        r.collapse = true;
        r.collapse_token = r.decode0_top1;
      }
    }
  }
}

/** An oracle run (--oracle) is the reference of another run, not a run to analyze itself. */
export function isOracleRun(run: TraceRun): boolean {
  return run.header.options.oracle_for !== undefined;
}

function analyzeRunsNoCollapse(runs: TraceRun[], opts: AnalyzeOptions, close = true): ReportRow[] {
  const rows: ReportRow[] = [];
  try {
    for (const run of runs) if (!isOracleRun(run)) for (const g of groups(run)) rows.push(analyzeOne(run, g, opts));
  } finally {
    // One descriptor per sidecar while the runs are analyzed; readRow reopens it if asked later.
    if (close) closeRuns(runs);
  }
  return rows;
}

/**
 * One row per run, prompt and experiment, in the order of the runs and their
 * headers; a row that is not a real comparison is INCOMPLETE or NO_DATA.
 */
export function analyzeTrace(runs: TraceRun[], opts: AnalyzeOptions = { tol: 0 }): ReportRow[] {
  const rows = analyzeRunsNoCollapse(runs, opts);
  markCollapse(rows);
  return rows;
}

/**
 * The rows of runs that must all be real comparisons (a run this process has
 * just traced): throws a UsageError naming the first row that is not.
 */
export function analyzeRuns(runs: TraceRun[], opts: AnalyzeOptions = { tol: 0 }): AnalysisRow[] {
  const rows = analyzeTrace(runs, opts);
  const out: AnalysisRow[] = [];
  for (const r of rows) {
    if (!isCompared(r)) throw new UsageError(`${r.prompt} ${r.exp} of run ${r.run_id}: ${r.first_mismatch_stage}: ${r.reason}`);
    out.push(r);
  }
  return out;
}

/**
 * Analyzes trace files as they stream: each run is analyzed when its end
 * record is read and its index dropped, so memory holds the records of the runs
 * still open and no row data. Rows come in file order, then header order.
 */
export function analyzeFiles(
  paths: string[],
  opts: AnalyzeOptions = { tol: 0 },
  /** Called with each run and its rows while its records are indexed and its sidecar open (the report reads a few rows there). */
  onRun?: (run: TraceRun, rows: ReportRow[]) => void,
): Analysis {
  const rows: ReportRow[] = [];
  const problems: string[] = [];
  const stats: AnalyzeStats = { files: 0, bytes: 0, lines: 0, runs: 0, records: 0, pairs: 0, rows_read: 0, row_bytes_read: 0 };
  const kvChecks: KvCheckRecord[] = [];
  const oracled = new Map<string, Set<string>>();
  for (const p of paths) {
    const done: { line: number; rows: ReportRow[] }[] = [];
    let rowFiles: TraceRun['rows'] | undefined;
    try {
      const f = streamTraceFile(p, (run) => {
        rowFiles = run.rows;
        kvChecks.push(...run.kvChecks);
        const of = run.header.options.oracle_for;
        if (typeof of === 'string') oracled.set(p, (oracled.get(p) ?? new Set()).add(of));
        const r = analyzeRunsNoCollapse([run], opts, false);
        if (r.length === 0 && !isOracleRun(run)) {
          // No prompt and experiment to make a row of: still not a comparison.
          const end = run.end ? '' : ' and no end record: it did not finish';
          problems.push(`run ${run.header.run_id} in ${p} has no stage records${end}`);
        }
        done.push({ line: run.headerLine, rows: r });
        onRun?.(run, r);
        stats.runs++;
        stats.records += run.stages.length + run.inputs.length + 1 + (run.end ? 1 : 0);
        stats.pairs += r.reduce((n, x) => n + x.comparisons.length, 0);
      });
      if (f.orphanCutLine !== undefined) {
        problems.push(`${p}:${f.orphanCutLine} is cut short and belongs to no run read: a run that did not finish`);
      }
      stats.files++;
      stats.bytes += f.bytes;
      stats.lines += f.lines;
    } finally {
      if (rowFiles) {
        stats.rows_read += rowFiles.rowsRead;
        stats.row_bytes_read += rowFiles.bytesRead;
        rowFiles.close();
      }
    }
    for (const d of done.sort((x, y) => x.line - y.line)) rows.push(...d.rows);
  }
  markCollapse(rows);
  return { rows, problems, stats, kvChecks, oracled };
}

/** 0 when every row is a real comparison, 3 when a row is INCOMPLETE or NO_DATA or a line was cut short. */
export function analysisExitCode(a: Pick<Analysis, 'rows' | 'problems'>): number {
  const whole = a.problems.length === 0 && a.rows.every((r) => r.status === 'compared');
  return whole ? ANALYZE_EXIT.ok : ANALYZE_EXIT.notCompared;
}

/** Table columns, as in the StageTrace reports; MAE columns for points present. */
export function tableColumns(rows: ReportRow[]): string[] {
  const present = POINTS.filter((p) => rows.some((r) => r.point_mae[p] !== undefined));
  return [
    'prompt',
    'exp',
    'first_mismatch_stage',
    'first_mismatch_layer',
    ...present.map((p) => `${p}_mae`),
    'prefill_last_top1',
    'decode0_top1',
    'collapse',
  ];
}

function cell(r: ReportRow, col: string): string {
  if (col.endsWith('_mae')) return fmt(r.point_mae[col.slice(0, -4) as Point]);
  switch (col) {
    case 'first_mismatch_layer':
      return r.first_mismatch_layer === null ? (r.first_mismatch === null ? '-' : 'final') : String(r.first_mismatch_layer);
    case 'collapse':
      return r.collapse ? `true (${r.collapse_token})` : 'false';
    case 'prefill_last_top1':
    case 'decode0_top1':
      return r[col] === null ? '-' : String(r[col]);
    default:
      return String(r[col as keyof ReportRow]);
  }
}

const where = (c: Comparison) => `${c.layer === null ? c.point : `layer ${c.layer} ${c.point}`}${c.head === null ? '' : ` head ${c.head}`}`;

export function formatTable(rows: ReportRow[], problems: string[] = []): string {
  const cols = tableColumns(rows);
  const right = (c: string) => c.endsWith('_mae') || c.endsWith('_top1');
  const lines = [
    `| ${cols.join(' | ')} |`,
    `|${cols.map((c) => (right(c) ? '---:' : '---')).join('|')}|`,
    ...rows.map((r) => `| ${cols.map((c) => cell(r, c)).join(' | ')} |`),
  ];
  const notes: string[] = [];
  for (const r of rows) {
    if (r.fault) notes.push(`${r.prompt} ${r.exp}: run ${r.run_id} has a planted fault ${r.fault} (--fault): its decode path is wrong on purpose`);
    if (r.status === 'no_data') {
      notes.push(`${r.prompt} ${r.exp}: NO_DATA: ${r.reason}; nothing to compare (trace both ${BASE_PHASE} and ${TEST_PHASE})`);
      continue;
    }
    if (r.status === 'incomplete') {
      const c = r.comparisons.find((x) => !x.equal);
      const sofar =
        r.comparisons.length === 0 ? 'no pair to compare'
        : c ? `${r.comparisons.length} pairs read, first mismatch among them at ${where(c)}`
        : `${r.comparisons.length} pairs read, all bit-identical so far`;
      notes.push(`${r.prompt} ${r.exp}: INCOMPLETE: ${r.reason}; ${sofar}`);
      continue;
    }
    const c = r.comparisons.find((x) => !x.equal);
    if (!c) {
      notes.push(`${r.prompt} ${r.exp}: ${r.comparisons.length} (layer, point) pairs, all bit-identical`);
    } else {
      const pos = (s: PhaseSide) => `token ${s.token_id} index ${s.token_index} pos ${s.pos_id} seq_len ${s.seq_len}`;
      notes.push(
        `${r.prompt} ${r.exp}: first mismatch at ${where(c)}: ` +
          (c.widths
            ? `rows of different widths, ${BASE_PHASE} ${c.widths.prefill_last} and ${TEST_PHASE} ${c.widths.decode0} (another number of keys or heads)`
            : `mae ${fmt(c.mae)}, max_abs ${fmt(c.max_abs)}, rel_l2 ${fmt(c.rel_l2)}`) +
          `; ${BASE_PHASE} ${pos(c.prefill_last)}; ${TEST_PHASE} ${pos(c.decode0)}`,
      );
    }
    if (r.unpaired.length) notes.push(`${r.prompt} ${r.exp}: traced in one phase only: ${r.unpaired.join(', ')}`);
  }
  notes.push(...problems);
  return lines.join('\n') + '\n\n' + notes.join('\n');
}

export function formatAnalysis(a: Analysis): string {
  return formatTable(a.rows, a.problems);
}

/** The JSON form: the table's field names, plus every comparison. */
export function toJson(rows: ReportRow[], problems: string[] = []): object {
  return {
    rows: rows.map((r) => {
      const { point_mae, ...rest } = r;
      const maes = Object.fromEntries(Object.entries(point_mae).map(([p, v]) => [`${p}_mae`, v]));
      return { ...rest, ...maes };
    }),
    problems,
  };
}
