// The report's data: everything the page shows, built from the analyzer's
// own functions (analyzeFiles, analysisOracle, compareFiles), so the page and
// `greta analyze --json` cannot disagree. The page only lays it out.
//
// Size stays bounded by layers x points per prompt and experiment: per-head
// points become one cell (the worst head, as the analyzer's <point>_mae), and
// rows are read only for the one attention head the page draws.
import { analysisExitCode, analyzeFiles, BASE_PHASE, TEST_PHASE, type AnalyzeOptions, type Comparison, type PhaseSide, type ReportRow, type RowStatus } from '../analyze/analyze.js';
import type { TraceRun } from '../analyze/load.js';
import { UsageError } from '../errors.js';
import { analysisOracle, DEFAULT_ORACLE_BOUND, type OracleVerdict } from '../analyze/oracle.js';
import { compareFiles, type CompareResult, type LayerWorst, type PairResult, type PhaseSummary, type PointWorst, type SideInfo, type ToleranceMode } from '../compare/compare.js';
import { inForwardOrder, LAYER_POINTS, type Point } from '../trace/points.js';
import { fromJsonNumber, type Exp, type KvCheck, type StageRecord } from '../trace/schema.js';
import { tokenTextFor, type TokenText } from './tokens.js';

/** Points inside attention: a first mismatch here gets the probs panel at its own layer. */
const ATTENTION_POINTS: readonly Point[] = LAYER_POINTS.slice(LAYER_POINTS.indexOf('q'), LAYER_POINTS.indexOf('attn_out') + 1);

export interface ReportSources {
  files: string[];
  /** A trace to compare every file with (greta compare BASE file). */
  compare?: string;
  /** The analyzer's --tol: a pair mismatches when its MAE exceeds it (0: any bit). */
  tol?: number;
  /** Relative L2 to the oracle beyond which a phase departed. */
  oracleTol?: number;
}

export interface TokenRef {
  id: number;
  /** The token's text, or null when no tokenizer fits the model. */
  text: string | null;
}

export interface ReportRunInfo {
  file: string;
  run_id: string;
  created_at: string;
  tool: { name: string; version: string };
  model: { name: string; weight_dtype: string; seed?: string };
  config: Record<string, unknown>;
  backend: string;
  device: string;
  git_commit: string | null;
  options: Record<string, unknown>;
  finished: boolean;
  /** The run this one is the fp64 oracle of, or null. */
  oracle_for: string | null;
}

/** One (layer, point) of the heatmap: the analyzer's comparison, the worst head for a per-head point. */
export interface ReportCell {
  layer: number | null;
  point: Point;
  /** Bit-identical (every head of a per-head point). */
  equal: boolean;
  mae: number;
  max_abs: number;
  rel_l2: number;
  /** The head whose numbers these are (the one of largest MAE), null for a whole row. */
  head: number | null;
  /** Per-head points: heads traced and how many differ. */
  heads?: number;
  heads_differing?: number;
  /** Each phase's relative L2 to the oracle (worst head), with --oracle. */
  oracle?: { prefill_last: number | null; decode0: number | null };
}

export interface AttentionPanel {
  layer: number;
  head: number;
  /** Why this layer and head: the first mismatch itself, or the first probs row that differs. */
  why: 'first_mismatch' | 'first_probs_mismatch';
  equal: boolean;
  mae: number;
  max_abs: number;
  prefill_last: number[];
  decode0: number[];
}

export interface TopkEntry extends TokenRef {
  value: number;
}

export interface ReportSection {
  id: string;
  run_id: string;
  file: string;
  prompt: string;
  exp: Exp;
  status: RowStatus;
  reason: string | null;
  fault: string | null;
  model: string;
  backend: string;
  first_mismatch_stage: ReportRow['first_mismatch_stage'];
  first: (Pick<Comparison, 'layer' | 'point' | 'head' | 'mae' | 'max_abs' | 'rel_l2' | 'widths'> & { prefill_last: PhaseSide; decode0: PhaseSide }) | null;
  pairs: number;
  equal_pairs: number;
  layers: number[];
  points: Point[];
  cells: ReportCell[];
  unpaired: string[];
  top1: { prefill_last: TokenRef | null; decode0: TokenRef | null };
  topk: { prefill_last: TopkEntry[] | null; decode0: TopkEntry[] | null };
  collapse: TokenRef | null;
  kv_check: (KvCheck & { phase: string }) | null;
  oracle: Omit<OracleVerdict, 'pairs' | 'run_id' | 'prompt' | 'exp'> | null;
  /** The probs rows of both phases at one head, or why there are none. */
  attention: AttentionPanel | { none: string };
}

export interface CollapseGroup {
  model: string;
  backend: string;
  exp: Exp;
  token: TokenRef;
  /** Each prompt with its own prefill_last top-1: different answers, one decode0 answer. */
  prompts: { prompt: string; run_id: string; prefill_last_top1: TokenRef | null }[];
}

export interface CompareSummary {
  base: SideInfo;
  test: SideInfo;
  mode: ToleranceMode;
  mode_reason: string;
  pairs: number;
  beyond: number;
  first: PairResult | null;
  phases: PhaseSummary[];
  phase_names: string[];
  layers: LayerWorst[];
  points: PointWorst[];
  only_base: number;
  only_test: number;
  exit: number;
}

export interface ReportData {
  format: 1;
  generated_at: string;
  files: string[];
  tol: number;
  oracle_tol: number;
  runs: ReportRunInfo[];
  sections: ReportSection[];
  collapse: CollapseGroup[];
  problems: string[];
  compare: { base: string; results: CompareSummary[] } | null;
  /** The analyzer's exit code for these files (0: every row a real comparison). */
  exit: number;
}

function cellsOf(comparisons: Comparison[]): ReportCell[] {
  const out = new Map<string, ReportCell>();
  for (const c of comparisons) {
    const k = `${c.layer}:${c.point}`;
    const cur = out.get(k);
    if (!cur) {
      out.set(k, {
        layer: c.layer, point: c.point, equal: c.equal, mae: c.mae, max_abs: c.max_abs, rel_l2: c.rel_l2, head: c.head,
        ...(c.head !== null ? { heads: 1, heads_differing: c.equal ? 0 : 1 } : {}),
      });
      continue;
    }
    // A further head of a per-head point: the cell shows the worst one by MAE.
    cur.heads! += 1;
    if (!c.equal) cur.heads_differing! += 1;
    cur.equal &&= c.equal;
    if (c.mae > cur.mae) Object.assign(cur, { mae: c.mae, max_abs: c.max_abs, rel_l2: c.rel_l2, head: c.head });
  }
  return [...out.values()];
}

function topkOf(rec: StageRecord | undefined, text: TokenText): TopkEntry[] | null {
  if (!rec?.topk) return null;
  return rec.topk.ids.map((id, i) => ({ id, text: text(id), value: fromJsonNumber(rec.topk!.values[i]!) }));
}

const tokenRef = (id: number | null, text: TokenText): TokenRef | null => (id === null ? null : { id, text: text(id) });

function stageOf(run: TraceRun, row: ReportRow, phase: string, layer: number | null, point: Point, head: number | null): StageRecord | undefined {
  return run.stages.find(
    (s) => s.prompt === row.prompt && s.exp === row.exp && s.phase === phase && s.layer === layer && s.point === point && (s.head ?? null) === head,
  );
}

/** The probs rows at the first mismatch when it is in attention, else at the first probs row that differs. */
function attentionPanel(run: TraceRun, row: ReportRow): AttentionPanel | { none: string } {
  const probs = row.comparisons.filter((c) => c.point === 'probs');
  if (probs.length === 0) return { none: 'probs not traced (trace with --attn-pipe, or --points with probs)' };
  const first = row.comparisons.find((c) => !c.equal);
  let pick: Comparison | undefined;
  let why: AttentionPanel['why'] = 'first_probs_mismatch';
  if (first && first.layer !== null && ATTENTION_POINTS.includes(first.point)) {
    const atLayer = probs.filter((c) => c.layer === first.layer);
    pick = atLayer.find((c) => c.head === first.head) ?? atLayer.find((c) => !c.equal) ?? atLayer[0];
    why = 'first_mismatch';
  }
  pick ??= probs.find((c) => !c.equal);
  if (!pick) return { none: `probs equal in every traced layer and head (${probs.length} rows per phase)` };
  const a = stageOf(run, row, BASE_PHASE, pick.layer, 'probs', pick.head);
  const b = stageOf(run, row, TEST_PHASE, pick.layer, 'probs', pick.head);
  if (!a || !b) return { none: 'probs records not found' };
  return {
    layer: pick.layer!,
    head: pick.head ?? 0,
    why,
    equal: pick.equal,
    mae: pick.mae,
    max_abs: pick.max_abs,
    prefill_last: Array.from(run.rows.read(a)),
    decode0: Array.from(run.rows.read(b)),
  };
}

/** The verdict without its per-pair distances, which the cells carry. */
function verdictOf(v: OracleVerdict): ReportSection['oracle'] {
  const { pairs: _pairs, run_id: _run, prompt: _prompt, exp: _exp, ...verdict } = v;
  return verdict;
}

function runInfo(run: TraceRun): ReportRunInfo {
  const h = run.header;
  return {
    file: run.file, run_id: h.run_id, created_at: h.created_at, tool: h.tool, model: h.model, config: h.config,
    backend: h.backend, device: h.device, git_commit: h.git_commit, options: h.options, finished: run.end !== undefined,
    oracle_for: typeof h.options.oracle_for === 'string' ? h.options.oracle_for : null,
  };
}

function compareSummary(r: CompareResult): CompareSummary {
  return {
    base: r.base, test: r.test, mode: r.mode, mode_reason: r.mode_reason,
    pairs: r.pairs.length, beyond: r.pairs.filter((p) => !p.ok).length, first: r.first,
    phases: r.phases, phase_names: r.phase_names, layers: r.layers, points: r.points,
    only_base: r.only_base.length, only_test: r.only_test.length, exit: r.exit,
  };
}

/** greta compare BASE file; a file of several runs cannot say which (greta compare --run can). */
function compareWith(base: string, file: string): CompareSummary {
  try {
    return compareSummary(compareFiles(base, file));
  } catch (e) {
    if (e instanceof UsageError && e.message.startsWith('--run:')) {
      throw new UsageError(`--compare: ${e.message.slice('--run: '.length)}; the report compares files of one run (and its oracle): use greta compare --run for the others`);
    }
    throw e;
  }
}

/**
 * Builds the report of trace files: the analysis of every run, prompt and
 * experiment (as `greta analyze --json`), the oracle verdicts, and with
 * `compare` each file against that trace (as `greta compare BASE file`).
 */
export function buildReport(input: ReportSources): ReportData {
  const tol = input.tol ?? 0;
  const oracleTol = input.oracleTol ?? DEFAULT_ORACLE_BOUND;
  const opts: AnalyzeOptions = { tol };
  const runs: ReportRunInfo[] = [];
  // What needs the run's records while they are open: top-k, probs rows, token text.
  const extras = new Map<ReportRow, Pick<ReportSection, 'topk' | 'attention' | 'kv_check'> & { text: TokenText }>();
  const a = analyzeFiles(input.files, opts, (run, rows) => {
    runs.push(runInfo(run));
    const text = tokenTextFor(run.header);
    for (const row of rows) {
      const kv = run.kvChecks.find((k) => k.prompt === row.prompt && k.exp === row.exp);
      extras.set(row, {
        text,
        topk: {
          prefill_last: topkOf(stageOf(run, row, BASE_PHASE, null, 'logits', null), text),
          decode0: topkOf(stageOf(run, row, TEST_PHASE, null, 'logits', null), text),
        },
        attention: row.status === 'compared' ? attentionPanel(run, row) : { none: `${row.first_mismatch_stage}: ${row.reason}` },
        kv_check: kv
          ? { phase: kv.phase, positions: kv.positions, layers: kv.layers, kv_heads: kv.kv_heads, equal: kv.equal, first: kv.first, differing: kv.differing, layers_differing: kv.layers_differing }
          : null,
      });
    }
  });
  if (a.rows.length === 0 && a.problems.length === 0) throw new UsageError(`report: no runs in ${input.files.join(', ')}`);
  const oracle = analysisOracle(a, tol, oracleTol);

  const sections = a.rows.map((row, i): ReportSection => {
    const x = extras.get(row)!;
    const first = row.comparisons.find((c) => !c.equal);
    const v = oracle.find((o) => o.run_id === row.run_id && o.prompt === row.prompt && o.exp === row.exp);
    const cells = cellsOf(row.comparisons);
    if (v) {
      // Each cell's distance to the oracle: its worst head per phase.
      const byCell = new Map(cells.map((c) => [`${c.layer}:${c.point}`, c]));
      const worse = (m: number | null | undefined, d: number | null) => (d === null ? (m ?? null) : m == null ? d : Math.max(m, d));
      for (const p of v.pairs) {
        const c = byCell.get(`${p.layer}:${p.point}`)!;
        c.oracle = { prefill_last: worse(c.oracle?.prefill_last, p.prefill_last_rel_l2), decode0: worse(c.oracle?.decode0, p.decode0_rel_l2) };
      }
    }
    const compared = row.status === 'compared';
    return {
      id: `s${i}`,
      run_id: row.run_id,
      file: runs.find((r) => r.run_id === row.run_id)?.file ?? '',
      prompt: row.prompt,
      exp: row.exp,
      status: row.status,
      reason: row.reason,
      fault: row.fault,
      model: row.model,
      backend: row.backend,
      first_mismatch_stage: row.first_mismatch_stage,
      first:
        first && compared
          ? { layer: first.layer, point: first.point, head: first.head, mae: first.mae, max_abs: first.max_abs, rel_l2: first.rel_l2, ...(first.widths ? { widths: first.widths } : {}), prefill_last: first.prefill_last, decode0: first.decode0 }
          : null,
      pairs: row.comparisons.length,
      equal_pairs: row.comparisons.filter((c) => c.equal).length,
      layers: [...new Set(row.comparisons.filter((c) => c.layer !== null).map((c) => c.layer!))].sort((p, q) => p - q),
      points: inForwardOrder(row.comparisons.map((c) => c.point)),
      cells,
      unpaired: row.unpaired,
      top1: { prefill_last: tokenRef(row.prefill_last_top1, x.text), decode0: tokenRef(row.decode0_top1, x.text) },
      topk: x.topk,
      collapse: row.collapse ? tokenRef(row.collapse_token, x.text) : null,
      kv_check: x.kv_check,
      oracle: v ? verdictOf(v) : null,
      attention: x.attention,
    };
  });

  // Collapse as the analyzer marked it, gathered per (model, backend, exp, token).
  const collapse = new Map<string, CollapseGroup>();
  for (const s of sections) {
    if (!s.collapse) continue;
    const k = `${s.model}|${s.backend}|${s.exp}|${s.collapse.id}`;
    let g = collapse.get(k);
    if (!g) collapse.set(k, (g = { model: s.model, backend: s.backend, exp: s.exp, token: s.collapse, prompts: [] }));
    g.prompts.push({ prompt: s.prompt, run_id: s.run_id, prefill_last_top1: s.top1.prefill_last });
  }

  const compare = input.compare === undefined ? null : { base: input.compare, results: input.files.map((f) => compareWith(input.compare!, f)) };
  const exit = analysisExitCode(a);
  return {
    format: 1,
    generated_at: new Date().toISOString(),
    files: input.files,
    tol,
    oracle_tol: oracleTol,
    runs,
    sections,
    collapse: [...collapse.values()],
    problems: a.problems,
    compare,
    exit,
  };
}
