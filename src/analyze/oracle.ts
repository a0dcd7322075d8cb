// The third opinion (--oracle cpu-fp64): every traced pair of a run against
// the same phase, layer, point and head of its fp64 run, as relative L2. At
// the first mismatch it says which side departed from the exact answer:
// decode0, prefill_last, both, or neither (a difference within fp32 rounding
// of fp64, which only the bit comparison can see).
//
// Default bound 1e-4: our fp32 trace measured at most 1.0e-5 from fp64 at
// Llama-3-8B depth (docs/oracle-results.md: layer 30 attn_out; 4.2e-7 at
// small shapes), so a phase further than 10x that from the oracle has left
// fp32 rounding behind.
import type { Point } from '../trace/points.js';
import type { Exp, StageRecord } from '../trace/schema.js';
import { analyzeTrace, BASE_PHASE, compareRows, TEST_PHASE, type Analysis, type ReportRow } from './analyze.js';
import { readRow, readTraceFile, type TraceRun } from './load.js';

export const DEFAULT_ORACLE_BOUND = 1e-4;

export type Departed = 'decode0' | 'prefill_last' | 'both' | 'neither';

export interface OraclePair {
  layer: number | null;
  point: Point;
  head?: number | null;
  prefill_last_rel_l2: number | null;
  decode0_rel_l2: number | null;
}

export interface OracleVerdict {
  run_id: string;
  prompt: string;
  exp: Exp;
  oracle_run: string;
  oracle_backend: string;
  bound: number;
  /** The first mismatch of the run's own comparison, or null when there is none. */
  at: { layer: number | null; point: Point; head?: number } | null;
  prefill_last_rel_l2: number | null;
  decode0_rel_l2: number | null;
  departed: Departed | null;
  /** Each phase's largest distance to the oracle over every pair. */
  worst: Record<'prefill_last' | 'decode0', { rel_l2: number; layer: number | null; point: Point; head?: number } | null>;
  pairs: OraclePair[];
}

const key = (phase: string, s: { layer: number | null; point: string; head?: number | null }) =>
  `${phase}|${s.layer ?? 'final'}|${s.point}|${s.head ?? ''}`;

function index(run: TraceRun, prompt: string, exp: Exp): Map<string, StageRecord> {
  const m = new Map<string, StageRecord>();
  for (const s of run.stages) if (s.prompt === prompt && s.exp === exp) m.set(key(s.phase, s), s);
  return m;
}

export function oracleVerdicts(runs: TraceRun[], rows: ReportRow[], bound = DEFAULT_ORACLE_BOUND): OracleVerdict[] {
  const out: OracleVerdict[] = [];
  for (const row of rows) {
    const run = runs.find((r) => r.header.run_id === row.run_id);
    const oracle = runs.find((r) => r.header.options.oracle_for === row.run_id);
    if (!run || !oracle) continue;
    const mine = index(run, row.prompt, row.exp);
    const theirs = index(oracle, row.prompt, row.exp);
    const distance = (phase: string, c: { layer: number | null; point: string; head?: number | null }): number | null => {
      const a = mine.get(key(phase, c));
      const o = theirs.get(key(phase, c));
      if (!a || !o) return null;
      const x = readRow(run, a);
      const y = readRow(oracle, o);
      return x.length === y.length ? compareRows(y, x).rel_l2 : Infinity;
    };
    const pairs: OraclePair[] = row.comparisons.map((c) => ({
      layer: c.layer,
      point: c.point,
      ...(c.head !== undefined && c.head !== null ? { head: c.head } : {}),
      prefill_last_rel_l2: distance(BASE_PHASE, c),
      decode0_rel_l2: distance(TEST_PHASE, c),
    }));
    const worstOf = (f: (p: OraclePair) => number | null) => {
      let w: OracleVerdict['worst']['decode0'] = null;
      for (const p of pairs) {
        const v = f(p);
        if (v !== null && (w === null || v > w.rel_l2)) w = { rel_l2: v, layer: p.layer, point: p.point, ...(p.head != null ? { head: p.head } : {}) };
      }
      return w;
    };
    const firstIdx = row.comparisons.findIndex((c) => !c.equal);
    const first = firstIdx >= 0 ? pairs[firstIdx]! : null;
    let departed: Departed | null = null;
    if (first && first.prefill_last_rel_l2 !== null && first.decode0_rel_l2 !== null) {
      const p = first.prefill_last_rel_l2 > bound;
      const d = first.decode0_rel_l2 > bound;
      departed = p && d ? 'both' : d ? 'decode0' : p ? 'prefill_last' : 'neither';
    }
    out.push({
      run_id: row.run_id,
      prompt: row.prompt,
      exp: row.exp,
      oracle_run: oracle.header.run_id,
      oracle_backend: oracle.header.backend,
      bound,
      at: first ? { layer: first.layer, point: first.point, ...(first.head != null ? { head: first.head } : {}) } : null,
      prefill_last_rel_l2: first?.prefill_last_rel_l2 ?? null,
      decode0_rel_l2: first?.decode0_rel_l2 ?? null,
      departed,
      worst: { prefill_last: worstOf((p) => p.prefill_last_rel_l2), decode0: worstOf((p) => p.decode0_rel_l2) },
      pairs,
    });
  }
  return out;
}

/**
 * The verdicts of the runs of an analysis that have an oracle run: their
 * records and their oracles' are indexed again (rows stay on disk), since a
 * streamed run is dropped before its oracle run, later in the file, is read.
 */
export function analysisOracle(a: Pick<Analysis, 'oracled'>, tol = 0, bound = DEFAULT_ORACLE_BOUND): OracleVerdict[] {
  return [...a.oracled].flatMap(([file, ids]) => {
    const runs = readTraceFile(file, (h) => ids.has(h.run_id) || ids.has(String(h.options.oracle_for))).runs;
    return oracleVerdicts(runs, analyzeTrace(runs, { tol }), bound);
  });
}

const e = (v: number | null) => (v === null ? '-' : v === 0 ? '0' : v.toExponential(2));
const where = (w: { layer: number | null; point: string; head?: number | null }) =>
  `${w.layer === null ? '' : `layer ${w.layer} `}${w.point}${w.head != null ? ` head ${w.head}` : ''}`;

export function formatOracle(vs: OracleVerdict[]): string {
  return vs
    .map((v) => {
      const head = `${v.prompt} ${v.exp} oracle (${v.oracle_backend}, bound ${e(v.bound)}): `;
      const worst = `worst distance to it: prefill_last ${e(v.worst.prefill_last?.rel_l2 ?? null)}${v.worst.prefill_last ? ` at ${where(v.worst.prefill_last)}` : ''}, decode0 ${e(v.worst.decode0?.rel_l2 ?? null)}${v.worst.decode0 ? ` at ${where(v.worst.decode0)}` : ''}`;
      if (!v.at) return head + `no mismatch; ${worst}`;
      const verdict =
        v.departed === 'neither'
          ? 'neither side departed beyond fp32 rounding of fp64 (a tiny, real difference only the bits show)'
          : v.departed === 'both'
            ? 'both sides departed from it'
            : `${v.departed} departed`;
      return head + `at ${where(v.at)} prefill_last is ${e(v.prefill_last_rel_l2)} from fp64 and decode0 ${e(v.decode0_rel_l2)}: ${verdict}; ${worst}`;
    })
    .join('\n');
}
