// The analyzer: pairs prefill_last with decode0 per (layer, point), measures
// their difference on the full rows, finds the first mismatch in forward
// order and reports top-1s and collapse, as in the StageTrace reports.
import { forwardOrder, LAYER_POINTS, POINTS, type Point } from '../trace/points.js';
import type { Exp, StageRecord } from '../trace/schema.js';
import { readRow, type TraceRun } from './load.js';

export const BASE_PHASE = 'prefill_last';
export const TEST_PHASE = 'decode0';

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
  /** For per-head points. */
  head?: number;
  equal: boolean;
  mae: number;
  max_abs: number;
  rel_l2: number;
  prefill_last: PhaseSide;
  decode0: PhaseSide;
}

export interface AnalysisRow {
  run_id: string;
  model: string;
  backend: string;
  /** The fault planted in the run (--fault), or null. */
  fault: string | null;
  prompt: string;
  exp: Exp;
  first_mismatch_stage: Point | 'NONE';
  first_mismatch_layer: number | null;
  first_mismatch: { mae: number; max_abs: number; rel_l2: number } | null;
  /** `<point>_mae`: at the first mismatch layer (the first traced layer when none). */
  point_mae: Partial<Record<Point, number>>;
  prefill_last_top1: number | null;
  decode0_top1: number | null;
  collapse: boolean;
  collapse_token: number | null;
  /** (layer, point) seen in only one of the two phases. */
  unpaired: string[];
  comparisons: Comparison[];
}

export interface AnalyzeOptions {
  /** A pair mismatches when its MAE exceeds tol; with 0, any bit difference counts. */
  tol: number;
}

function side(r: StageRecord): PhaseSide {
  return { hash: r.hash, token_id: r.token_id, token_index: r.token_index, pos_id: r.pos_id, seq_len: r.seq_len };
}

export function compareRows(a: Float64Array, b: Float64Array): { mae: number; max_abs: number; rel_l2: number } {
  let sum = 0;
  let max = 0;
  let diff2 = 0;
  let ref2 = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    // Equal bits (NaN with NaN, inf with the same inf) differ by 0; any other non-finite pair by inf.
    const d = x === y || (Number.isNaN(x) && Number.isNaN(y)) ? 0 : Math.abs(x - y) || Infinity;
    sum += d;
    if (d > max) max = d;
    diff2 += d * d;
    if (Number.isFinite(x)) ref2 += x * x;
  }
  const n = Math.max(1, a.length);
  return { mae: sum / n, max_abs: max, rel_l2: ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2) };
}

function top1Of(run: TraceRun, prompt: string, exp: Exp, phase: string): number | null {
  const logits = run.stages.find((s) => s.prompt === prompt && s.exp === exp && s.phase === phase && s.point === 'logits');
  if (logits?.topk) return logits.topk.ids[0] ?? null;
  const res = run.end?.results.find((r) => r.prompt === prompt && r.exp === exp);
  if (!res) return null;
  if (phase === BASE_PHASE) return res.prefill_last_top1;
  return res.decode_top1[Number(phase.slice('decode'.length))] ?? null;
}

function analyzeOne(run: TraceRun, prompt: string, exp: Exp, opts: AnalyzeOptions): AnalysisRow {
  const nLayers = Number(run.header.config.num_hidden_layers ?? 0);
  const key = (r: StageRecord) => `${r.layer ?? 'final'}:${r.point}${r.head !== undefined ? `:${r.head}` : ''}`;
  const base = new Map<string, StageRecord>();
  const test = new Map<string, StageRecord>();
  for (const s of run.stages) {
    if (s.prompt !== prompt || s.exp !== exp) continue;
    if (s.phase === BASE_PHASE) base.set(key(s), s);
    else if (s.phase === TEST_PHASE) test.set(key(s), s);
  }
  const unpaired = [...base.keys()].filter((k) => !test.has(k)).concat([...test.keys()].filter((k) => !base.has(k)));

  const comparisons: Comparison[] = [];
  for (const [k, a] of base) {
    const b = test.get(k);
    if (!b) continue;
    const m = compareRows(readRow(run, a), readRow(run, b));
    const equal = opts.tol === 0 ? a.hash === b.hash && m.max_abs === 0 : m.mae <= opts.tol;
    comparisons.push({ layer: a.layer, point: a.point, ...(a.head !== undefined ? { head: a.head } : {}), equal, ...m, prefill_last: side(a), decode0: side(b) });
  }
  comparisons.sort(
    (x, y) => forwardOrder(x.layer, x.point, nLayers) - forwardOrder(y.layer, y.point, nLayers) || (x.head ?? 0) - (y.head ?? 0),
  );

  const first = comparisons.find((c) => !c.equal);
  const layers = [...new Set(comparisons.filter((c) => c.layer !== null).map((c) => c.layer!))];
  const maeLayer = first?.layer ?? layers[0] ?? null;
  const point_mae: Partial<Record<Point, number>> = {};
  for (const c of comparisons) {
    const isLayerPoint = (LAYER_POINTS as readonly string[]).includes(c.point);
    // Per-head points: the worst head.
    if (isLayerPoint ? c.layer === maeLayer : true) point_mae[c.point] = Math.max(point_mae[c.point] ?? 0, c.mae);
  }
  return {
    run_id: run.header.run_id,
    model: run.header.model.name,
    backend: run.header.backend,
    fault: typeof run.header.options.fault === 'string' ? run.header.options.fault : null,
    prompt,
    exp,
    first_mismatch_stage: first ? first.point : 'NONE',
    first_mismatch_layer: first ? first.layer : null,
    first_mismatch: first ? { mae: first.mae, max_abs: first.max_abs, rel_l2: first.rel_l2 } : null,
    point_mae,
    prefill_last_top1: top1Of(run, prompt, exp, BASE_PHASE),
    decode0_top1: top1Of(run, prompt, exp, TEST_PHASE),
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
function markCollapse(rows: AnalysisRow[]): void {
  const groups = new Map<string, AnalysisRow[]>();
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

export function analyzeRuns(runs: TraceRun[], opts: AnalyzeOptions = { tol: 0 }): AnalysisRow[] {
  const rows: AnalysisRow[] = [];
  for (const run of runs) {
    // An oracle run (--oracle) is a reference for another run, not a run to analyze itself.
    if (run.header.options.oracle_for !== undefined) continue;
    const seen = new Set<string>();
    for (const s of run.stages) {
      const k = `${s.prompt}\u0000${s.exp}`;
      if (seen.has(k)) continue;
      seen.add(k);
      rows.push(analyzeOne(run, s.prompt, s.exp, opts));
    }
  }
  markCollapse(rows);
  return rows;
}

const fmt = (v: number | undefined | null): string => {
  if (v === undefined || v === null) return '-';
  if (v === 0) return '0';
  if (!Number.isFinite(v)) return String(v);
  return v.toExponential(3);
};

/** Table columns, as in the StageTrace reports; MAE columns for points present. */
export function tableColumns(rows: AnalysisRow[]): string[] {
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

function cell(r: AnalysisRow, col: string): string {
  if (col.endsWith('_mae')) return fmt(r.point_mae[col.slice(0, -4) as Point]);
  switch (col) {
    case 'first_mismatch_layer':
      return r.first_mismatch_layer === null ? (r.first_mismatch_stage === 'NONE' ? '-' : 'final') : String(r.first_mismatch_layer);
    case 'collapse':
      return r.collapse ? `true (${r.collapse_token})` : 'false';
    case 'prefill_last_top1':
    case 'decode0_top1':
      return r[col] === null ? '-' : String(r[col]);
    default:
      return String(r[col as keyof AnalysisRow]);
  }
}

export function formatTable(rows: AnalysisRow[]): string {
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
    if (r.comparisons.length === 0) {
      notes.push(`${r.prompt} ${r.exp}: nothing to compare (trace both ${BASE_PHASE} and ${TEST_PHASE})`);
      continue;
    }
    const c = r.comparisons.find((x) => !x.equal);
    if (!c) {
      notes.push(`${r.prompt} ${r.exp}: ${r.comparisons.length} (layer, point) pairs, all bit-identical`);
    } else {
      const where = (c.layer === null ? c.point : `layer ${c.layer} ${c.point}`) + (c.head !== undefined ? ` head ${c.head}` : '');
      const pos = (s: PhaseSide) => `token ${s.token_id} index ${s.token_index} pos ${s.pos_id} seq_len ${s.seq_len}`;
      notes.push(
        `${r.prompt} ${r.exp}: first mismatch at ${where}: mae ${fmt(c.mae)}, max_abs ${fmt(c.max_abs)}, ` +
          `rel_l2 ${fmt(c.rel_l2)}; ${BASE_PHASE} ${pos(c.prefill_last)}; ${TEST_PHASE} ${pos(c.decode0)}`,
      );
    }
    if (r.unpaired.length) notes.push(`${r.prompt} ${r.exp}: traced in one phase only: ${r.unpaired.join(', ')}`);
  }
  return lines.join('\n') + '\n\n' + notes.join('\n');
}

/** The JSON form: the table's field names, plus every comparison. */
export function toJson(rows: AnalysisRow[]): object {
  return {
    rows: rows.map((r) => {
      const { point_mae, ...rest } = r;
      const maes = Object.fromEntries(Object.entries(point_mae).map(([p, v]) => [`${p}_mae`, v]));
      return { ...rest, ...maes };
    }),
  };
}
