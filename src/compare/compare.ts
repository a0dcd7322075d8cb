// greta compare: the stage records of two traces paired by (prompt, exp,
// phase, layer, point[, head]) and position: two backends, two commits, two
// models, or our trace against another engine's. Each pair's two rows are read
// from the sidecars, measured in float64 and dropped; only the metrics stay.
import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { headOf, readTraceFile, RowBuffer, type TraceFile, type TraceRun } from '../analyze/load.js';
import { compareRows, fmt, sameBits } from '../analyze/metrics.js';
import { forwardOrder, POINTS, type Point } from '../trace/points.js';
import type { Exp, StageRecord } from '../trace/schema.js';

/**
 * Default relative-L2 bounds of an fp32 trace against an fp64 one (different
 * backends or models), per point. Measured with `greta compare` on
 * synthetic:tiny (32 layers), cpu-fp64 as BASE against cpu, prompts p0_short,
 * p4_sys and p6_long, E1 and E0, phases prefill_last and decode0..decode2,
 * every layer (README, Compare): the worst over all of them was
 *   x_in 1.26e-6, attn_out 7.04e-7, wo_out 7.71e-7, x_after_attn 1.25e-6,
 *   ffn_norm 1.25e-6, mlp_out 2.56e-6, x_out 1.26e-6, final_norm 1.20e-6,
 *   lm_head_in 1.20e-6, logits 1.20e-6.
 * fp32 error grows with depth and width. At Llama-3-8B shapes (H100, hip
 * against transformers' fp32 forward of the same bf16 checkpoint, p4_sys, E1
 * and E0, every layer: scripts/gpu/emitter_transformers.py) two fp32 engines
 * were at most: x_in 1.19e-5, v 1.17e-5, attn_out 1.93e-5, wo_out 1.90e-5,
 * x_after_attn 1.19e-5, ffn_norm 1.19e-5, gate 1.19e-5, up 1.22e-5, act
 * 1.73e-5, mlp_out 1.71e-5, x_out 1.21e-5, final points 1.21e-5; and our
 * fp32 trace is 1.0e-5 from fp64 at worst (docs/oracle-results.md). Each
 * bound is the larger of 10x the small-shape worst and 2.5x the 8B-shape
 * worst, rounded up to a 1-2-5 step: 5e-5 for every point.
 */
export const FP32_REL_L2: Readonly<Partial<Record<Point, number>>> = {
  x_in: 5e-5,
  attn_out: 5e-5,
  wo_out: 5e-5,
  x_after_attn: 5e-5,
  ffn_norm: 5e-5,
  mlp_out: 5e-5,
  x_out: 5e-5,
  final_norm: 5e-5,
  lm_head_in: 5e-5,
  logits: 5e-5,
};
/** Points without a measured bound (scores, probs): the loosest measured one. */
export const FP32_REL_L2_OTHER = Math.max(...Object.values(FP32_REL_L2));

/** Exit codes of `greta compare`. */
export const COMPARE_EXIT = {
  /** Every common pair within tolerance, both runs finished. */
  ok: 0,
  /** A pair beyond tolerance, or at a different position or shape. */
  beyond: 1,
  badInput: 2,
  /** Every common pair within tolerance, but a run did not finish: the answer is not a whole one. */
  unfinished: 3,
} as const;

export interface CompareOptions {
  /** Relative-L2 bound for every point; 0 means bits equal. Default: see toleranceMode. */
  tol?: number;
  /** Per-point bounds, over the default or --tol. */
  tolPoint?: Partial<Record<Point, number>>;
  /** Run ids to pick when a file holds several (each names a run of BASE or TEST). */
  runs?: string[];
}

export interface SideInfo {
  file: string;
  run_id: string;
  model: string;
  backend: string;
  device: string;
  finished: boolean;
  /** Line number of the file's last line when a killed writer cut it short in this run. */
  cut_line: number | null;
  records: number;
}

export interface PairSide {
  token_id: number;
  token_index: number;
  pos_id: number;
  seq_len: number;
  shape: number[];
  dtype: string;
  hash: string;
}

/** bits: not bit-identical (exact bound); rel_l2: over its bound; position: token or position differ; shape: widths differ. */
export type PairProblem = 'bits' | 'rel_l2' | 'position' | 'shape';

export interface PairResult {
  prompt: string;
  exp: Exp;
  phase: string;
  layer: number | null;
  point: Point;
  head: number | null;
  /** The relative-L2 bound applied; 0 means bits equal. */
  bound: number;
  ok: boolean;
  problem: PairProblem | null;
  /** What differs for a position or shape problem. */
  detail: string | null;
  /** Metrics in float64 on the full rows; null when the shapes differ. */
  mae: number | null;
  max_abs: number | null;
  rel_l2: number | null;
  cosine: number | null;
  base: PairSide;
  test: PairSide;
}

export interface PhaseSummary {
  prompt: string;
  exp: Exp;
  phase: string;
  pairs: number;
  beyond: number;
  first: PairResult | null;
  worst: PairResult | null;
}

export interface LayerWorst {
  layer: number | null;
  /** Per phase: the pair of the largest relative L2 at this layer, over prompts, experiments and points. */
  phases: Record<string, { rel_l2: number; point: Point; head: number | null; prompt: string; exp: Exp } | null>;
}

export interface PointWorst {
  point: Point;
  pairs: number;
  beyond: number;
  /** The largest relative L2 of the point over every prompt, experiment, phase and layer. */
  worst_rel_l2: number | null;
  bound: number;
}

export type ToleranceMode = 'exact' | 'fp32' | 'tol';

export interface CompareResult {
  base: SideInfo;
  test: SideInfo;
  /** exact: same backend and model, bits must be equal; fp32: the measured fp32-against-fp64 bounds; tol: --tol. */
  mode: ToleranceMode;
  mode_reason: string;
  /** The bound of each point compared (0: bits equal). */
  bounds: Partial<Record<Point, number>>;
  pairs: PairResult[];
  first: PairResult | null;
  phase_names: string[];
  phases: PhaseSummary[];
  layers: LayerWorst[];
  /** Per point, in forward order: the worst relative L2 and the bound (what the fp32 defaults were measured with). */
  points: PointWorst[];
  only_base: string[];
  only_test: string[];
  /** Files' last lines cut short that belong to no run read. */
  notes: string[];
  exit: number;
  stats: { rows_read: number; row_bytes_read: number };
}

// The two rows of the pair being compared; reused for every pair.
const ROW_A = new RowBuffer();
const ROW_B = new RowBuffer();

const pairKey = (r: StageRecord) =>
  `${r.prompt}\u0000${r.exp}\u0000${r.phase}\u0000${r.layer ?? 'final'}\u0000${r.point}\u0000${headOf(r) ?? ''}`;

export function pairLabel(r: { prompt: string; exp: string; phase: string; layer: number | null; point: string; head: number | null }): string {
  return `${r.prompt} ${r.exp} ${r.phase} ${r.layer === null ? '' : `layer ${r.layer} `}${r.point}${r.head === null ? '' : ` head ${r.head}`}`;
}

const phaseRank = (ph: string) => (ph === 'prefill_last' ? -1 : Number(ph.slice('decode'.length)));

/** Picks the run of a file: the one there is, or the one --run names. */
function pickRun(f: TraceFile, role: string, ids: string[], oracles: ReadonlySet<string>, taken?: string): TraceRun {
  const all = f.runIds;
  if (all.length === 0) throw new UsageError(`${role} '${f.path}' holds no run (no header record)`);
  const named = ids.find((id) => all.includes(id) && id !== taken);
  if (named !== undefined) return f.runs.find((r) => r.header.run_id === named)!;
  // A file of one run given twice compares that run with itself; an oracle run (--oracle) is
  // picked only when named.
  const own = all.filter((id) => !oracles.has(id));
  const left = own.length === 1 ? own : own.filter((id) => id !== taken);
  if (left.length === 1) return f.runs.find((r) => r.header.run_id === left[0])!;
  throw new UsageError(`--run: ${role} '${f.path}' holds ${all.length} runs; name one (runs: ${all.join(', ')})`);
}

function sideInfo(run: TraceRun): SideInfo {
  return {
    file: run.file,
    run_id: run.header.run_id,
    model: run.header.model.name,
    backend: run.header.backend,
    device: run.header.device,
    finished: run.end !== undefined,
    cut_line: run.cutLine ?? null,
    records: run.stages.length,
  };
}

function pairSide(r: StageRecord): PairSide {
  return { token_id: r.token_id, token_index: r.token_index, pos_id: r.pos_id, seq_len: r.seq_len, shape: r.shape, dtype: r.dtype, hash: r.hash };
}

/** The tolerance mode of two runs under these options, and why. */
export function toleranceMode(base: TraceRun, test: TraceRun, opts: CompareOptions): { mode: ToleranceMode; reason: string } {
  if (opts.tol !== undefined) return { mode: 'tol', reason: `--tol ${opts.tol}` };
  const b = base.header;
  const t = test.header;
  if (b.backend === t.backend && b.model.name === t.model.name) {
    return { mode: 'exact', reason: `same backend (${b.backend}) and model (${b.model.name}): bits must be equal` };
  }
  const what = [b.backend !== t.backend ? `backends ${b.backend}, ${t.backend}` : '', b.model.name !== t.model.name ? `models ${b.model.name}, ${t.model.name}` : '']
    .filter(Boolean)
    .join('; ');
  return { mode: 'fp32', reason: `different ${what}: relative L2 within the fp32-against-fp64 bound of each point` };
}

export function boundFor(point: Point, mode: ToleranceMode, opts: CompareOptions): number {
  const p = opts.tolPoint?.[point];
  if (p !== undefined) return p;
  if (mode === 'tol') return opts.tol!;
  if (mode === 'exact') return 0;
  return FP32_REL_L2[point] ?? FP32_REL_L2_OTHER;
}

/** Compares two runs: every common pair, in forward order. */
export function compareRuns(base: TraceRun, test: TraceRun, opts: CompareOptions = {}): CompareResult {
  const { mode, reason } = toleranceMode(base, test, opts);
  const testByKey = new Map<string, StageRecord>();
  for (const s of test.stages) testByKey.set(pairKey(s), s);
  const baseKeys = new Set<string>();

  // Forward order: (prompt, exp) as first met in BASE then TEST, phase, layer and point, head.
  const groupRank = new Map<string, number>();
  for (const s of [...base.stages, ...test.stages]) {
    const g = `${s.prompt}\u0000${s.exp}`;
    if (!groupRank.has(g)) groupRank.set(g, groupRank.size);
  }
  const nLayers = Math.max(
    Number(base.header.config.num_hidden_layers ?? 0),
    Number(test.header.config.num_hidden_layers ?? 0),
    ...[...base.stages, ...test.stages].map((s) => (s.layer ?? -1) + 1),
  );
  const order = (r: { prompt: string; exp: string; phase: string; layer: number | null; point: Point; head: number | null }) =>
    [groupRank.get(`${r.prompt}\u0000${r.exp}`)!, phaseRank(r.phase), forwardOrder(r.layer, r.point, nLayers), r.head ?? -1];
  const byOrder = <T extends Parameters<typeof order>[0]>(x: T, y: T) => {
    const a = order(x);
    const b = order(y);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
    return 0;
  };

  const pairs: PairResult[] = [];
  const onlyBase: StageRecord[] = [];
  try {
    for (const a of base.stages) {
      const k = pairKey(a);
      baseKeys.add(k);
      const b = testByKey.get(k);
      if (!b) {
        onlyBase.push(a);
        continue;
      }
      const bound = boundFor(a.point, mode, opts);
      const pr: PairResult = {
        prompt: a.prompt, exp: a.exp, phase: a.phase, layer: a.layer, point: a.point, head: headOf(a),
        bound, ok: true, problem: null, detail: null, mae: null, max_abs: null, rel_l2: null, cosine: null,
        base: pairSide(a), test: pairSide(b),
      };
      const moved = (['token_id', 'token_index', 'pos_id'] as const).filter((f) => a[f] !== b[f]).map((f) => `${f} ${a[f]} vs ${b[f]}`);
      if (a.shape.join('x') !== b.shape.join('x')) {
        Object.assign(pr, { ok: false, problem: 'shape', detail: `shape [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]` });
      } else {
        // Two rows at a time: read, measure, drop.
        const x = base.rows.readInto(a, ROW_A);
        const y = test.rows.readInto(b, ROW_B);
        Object.assign(pr, compareRows(x, y));
        const within = bound === 0 ? a.dtype === b.dtype && sameBits(x, y) : pr.rel_l2! <= bound;
        if (moved.length) Object.assign(pr, { ok: false, problem: 'position', detail: moved.join(', ') });
        else if (!within) Object.assign(pr, { ok: false, problem: bound === 0 ? 'bits' : 'rel_l2' });
      }
      pairs.push(pr);
    }
  } finally {
    base.rows.close();
    test.rows.close();
  }
  const onlyTest = test.stages.filter((s) => !baseKeys.has(pairKey(s)));
  if (pairs.length === 0) {
    throw new UsageError(
      `compare: BASE run ${base.header.run_id} and TEST run ${test.header.run_id} share no (prompt, exp, phase, layer, point)` +
        ` (BASE has ${base.stages.length} stage records, TEST ${test.stages.length})`,
    );
  }
  pairs.sort(byOrder);

  const phaseNames = [...new Set(pairs.map((p) => p.phase))].sort((x, y) => phaseRank(x) - phaseRank(y));
  const phases = new Map<string, PhaseSummary>();
  const layers = new Map<number | null, LayerWorst>();
  const bounds: Partial<Record<Point, number>> = {};
  const points = new Map<Point, PointWorst>();
  for (const p of pairs) {
    bounds[p.point] = p.bound;
    let pw = points.get(p.point);
    if (!pw) points.set(p.point, (pw = { point: p.point, pairs: 0, beyond: 0, worst_rel_l2: null, bound: p.bound }));
    pw.pairs++;
    if (!p.ok) pw.beyond++;
    if (p.rel_l2 !== null && (pw.worst_rel_l2 === null || !(p.rel_l2 <= pw.worst_rel_l2))) pw.worst_rel_l2 = p.rel_l2;
    const gk = `${p.prompt}\u0000${p.exp}\u0000${p.phase}`;
    let s = phases.get(gk);
    if (!s) phases.set(gk, (s = { prompt: p.prompt, exp: p.exp, phase: p.phase, pairs: 0, beyond: 0, first: null, worst: null }));
    s.pairs++;
    if (!p.ok) {
      s.beyond++;
      s.first ??= p;
    }
    if (p.rel_l2 !== null && (s.worst === null || !(p.rel_l2 <= s.worst.rel_l2!))) s.worst = p;
    let l = layers.get(p.layer);
    if (!l) layers.set(p.layer, (l = { layer: p.layer, phases: Object.fromEntries(phaseNames.map((ph) => [ph, null])) }));
    const cur = l.phases[p.phase];
    if (p.rel_l2 !== null && (!cur || !(p.rel_l2 <= cur.rel_l2))) {
      l.phases[p.phase] = { rel_l2: p.rel_l2, point: p.point, head: p.head, prompt: p.prompt, exp: p.exp };
    }
  }
  const baseInfo = sideInfo(base);
  const testInfo = sideInfo(test);
  const first = pairs.find((p) => !p.ok) ?? null;
  const exit = first ? COMPARE_EXIT.beyond : baseInfo.finished && testInfo.finished ? COMPARE_EXIT.ok : COMPARE_EXIT.unfinished;
  const label = (r: StageRecord) => pairLabel({ ...r, head: headOf(r) });
  return {
    base: baseInfo,
    test: testInfo,
    mode,
    mode_reason: reason,
    bounds,
    pairs,
    first,
    phase_names: phaseNames,
    phases: [...phases.values()],
    layers: [...layers.values()].sort((x, y) => (x.layer ?? Infinity) - (y.layer ?? Infinity)),
    points: [...points.values()].sort((x, y) => POINTS.indexOf(x.point) - POINTS.indexOf(y.point)),
    only_base: onlyBase.sort((x, y) => byOrder({ ...x, head: headOf(x) }, { ...y, head: headOf(y) })).map(label),
    only_test: onlyTest.sort((x, y) => byOrder({ ...x, head: headOf(x) }, { ...y, head: headOf(y) })).map(label),
    notes: [],
    exit,
    stats: {
      rows_read: base.rows.rowsRead + (test.rows === base.rows ? 0 : test.rows.rowsRead),
      row_bytes_read: base.rows.bytesRead + (test.rows === base.rows ? 0 : test.rows.bytesRead),
    },
  };
}

/** Compares the run of BASE with the run of TEST (--run picks among several). */
export function compareFiles(basePath: string, testPath: string, opts: CompareOptions = {}): CompareResult {
  const ids = opts.runs ?? [];
  // Only the runs that may be picked keep their records: those named, and a file's
  // first (its only one, when it has one), or first two when it is BASE and TEST.
  const oracles = new Set<string>();
  const keep = (unnamed: number) => {
    let seen = 0;
    return (h: { run_id: string; options: Record<string, unknown> }) => {
      if (h.options.oracle_for !== undefined) {
        oracles.add(h.run_id);
        return ids.includes(h.run_id);
      }
      return seen++ < unnamed || ids.includes(h.run_id);
    };
  };
  const same = resolve(basePath) === resolve(testPath);
  const bf = readTraceFile(basePath, keep(same ? 2 : 1));
  // The same file twice (two runs of one file): read it once.
  const tf = same ? bf : readTraceFile(testPath, keep(1));
  const known = new Set([...bf.runIds, ...tf.runIds]);
  const unknown = ids.find((id) => !known.has(id));
  if (unknown !== undefined) {
    throw new UsageError(`--run: no run '${unknown}' in BASE or TEST (runs: ${[...known].join(', ') || 'none'})`);
  }
  const base = pickRun(bf, 'BASE', ids, oracles);
  const test = pickRun(tf, 'TEST', ids.filter((id) => id !== base.header.run_id), oracles, bf === tf ? base.header.run_id : undefined);
  const r = compareRuns(base, test, opts);
  for (const f of bf === tf ? [bf] : [bf, tf]) {
    if (f.orphanCutLine !== undefined) r.notes.push(`${f.path}:${f.orphanCutLine} is cut short and belongs to no run read`);
  }
  return r;
}

function groupOneSide(labels: string[]): string[] {
  // "p E phase [layer L ]point[ head H]" -> per (p, E, phase): point with its layers as ranges.
  const groups = new Map<string, Map<string, number[]>>();
  for (const l of labels) {
    const m = /^(\S+ \S+ \S+) (?:layer (\d+) )?(.+)$/.exec(l)!;
    const g = groups.get(m[1]!) ?? new Map<string, number[]>();
    groups.set(m[1]!, g);
    const pts = g.get(m[3]!) ?? [];
    g.set(m[3]!, pts);
    if (m[2] !== undefined) pts.push(Number(m[2]));
  }
  const ranges = (ls: number[]) => {
    const out: string[] = [];
    const s = [...new Set(ls)].sort((a, b) => a - b);
    for (let i = 0; i < s.length; ) {
      let j = i;
      while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
      out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
      i = j + 1;
    }
    return out.join(',');
  };
  return [...groups].map(([g, pts]) => `${g}: ${[...pts].map(([p, ls]) => (ls.length ? `${p} (layers ${ranges(ls)})` : p)).join(', ')}`);
}

const metrics = (p: PairResult) =>
  p.mae === null
    ? ''
    : `mae ${fmt(p.mae)}, max_abs ${fmt(p.max_abs)}, rel_l2 ${fmt(p.rel_l2)}, cosine ${Number.isFinite(p.cosine!) ? p.cosine!.toFixed(9) : p.cosine}`;
const boundText = (b: number) => (b === 0 ? 'bits equal' : `rel_l2 <= ${b.toExponential()}`);
const pos = (s: PairSide) => `token ${s.token_id} index ${s.token_index} pos ${s.pos_id}`;

export function formatCompare(r: CompareResult): string {
  const side = (name: string, s: SideInfo) =>
    `${name}: ${s.file}, run ${s.run_id}: ${s.model} on ${s.backend} (${s.device}), ${s.records} stage records` +
    (s.finished ? '' : `, NOT FINISHED (no end record${s.cut_line === null ? '' : `; ${s.file}:${s.cut_line} is cut short`})`);
  const out = [side('base', r.base), side('test', r.test)];
  const pts = Object.entries(r.bounds) as [Point, number][];
  const same = new Set(pts.map(([, b]) => b)).size === 1;
  out.push(
    `tolerance: ${r.mode_reason}; ` +
      (same ? `${boundText(pts[0]![1])} for every point` : pts.map(([p, b]) => `${p} ${b === 0 ? 'bits' : b.toExponential()}`).join(', ')),
  );
  out.push('');
  if (r.first) {
    const p = r.first;
    const why =
      p.problem === 'position' ? `position differs (${p.detail})`
      : p.problem === 'shape' ? `${p.detail}`
      : `beyond ${boundText(p.bound)}`;
    out.push(`first beyond tolerance: ${pairLabel(p)}: ${why}${p.mae === null ? '' : `; ${metrics(p)}`}; base ${pos(p.base)}; test ${pos(p.test)}`);
  } else {
    out.push(`first beyond tolerance: none (${r.pairs.length} common pairs within tolerance)`);
  }
  out.push('');
  out.push('| prompt | exp | phase | pairs | beyond | first beyond | worst rel_l2 |', '|---|---|---|---:|---:|---|---|');
  for (const s of r.phases) {
    const first = s.first ? `${s.first.layer === null ? '' : `layer ${s.first.layer} `}${s.first.point}${s.first.head === null ? '' : ` head ${s.first.head}`}` : '-';
    const worst = s.worst ? `${fmt(s.worst.rel_l2)} (${s.worst.layer === null ? '' : `layer ${s.worst.layer} `}${s.worst.point})` : '-';
    out.push(`| ${s.prompt} | ${s.exp} | ${s.phase} | ${s.pairs} | ${s.beyond} | ${first} | ${worst} |`);
  }
  out.push('');
  out.push('worst relative L2 per layer (over prompts, experiments and points):', '');
  out.push(`| layer | ${r.phase_names.join(' | ')} |`, `|---:|${r.phase_names.map(() => '---').join('|')}|`);
  for (const l of r.layers) {
    const cells = r.phase_names.map((ph) => {
      const w = l.phases[ph];
      return w ? `${fmt(w.rel_l2)} ${w.point}${w.head === null ? '' : ` head ${w.head}`}` : '-';
    });
    out.push(`| ${l.layer ?? 'final'} | ${cells.join(' | ')} |`);
  }
  out.push('');
  out.push('worst relative L2 per point (over prompts, experiments, phases and layers):', '');
  out.push('| point | pairs | beyond | worst rel_l2 | bound |', '|---|---:|---:|---:|---|');
  for (const p of r.points) out.push(`| ${p.point} | ${p.pairs} | ${p.beyond} | ${fmt(p.worst_rel_l2)} | ${p.bound === 0 ? 'bits equal' : p.bound.toExponential()} |`);
  out.push('');
  for (const [name, labels] of [['base', r.only_base], ['test', r.only_test]] as const) {
    if (labels.length === 0) continue;
    out.push(`only in ${name} (${labels.length} records): ${groupOneSide(labels).join('; ')}`);
  }
  out.push(...r.notes);
  const beyond = r.pairs.filter((p) => !p.ok).length;
  const unfinished = [r.base, r.test].filter((s) => !s.finished).map((s) => `run ${s.run_id} did not finish`);
  out.push(
    `compare: ${r.pairs.length} pairs, ${beyond} beyond tolerance, ${r.only_base.length} only in base, ${r.only_test.length} only in test` +
      (unfinished.length ? `; ${unfinished.join(', ')}` : ''),
  );
  return out.join('\n');
}
