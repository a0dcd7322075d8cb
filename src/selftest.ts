// greta selftest: the tool's proof that it finds what it claims. Loads the
// model once, then traces E1 once without a fault and once per planted fault
// (each layered fault at a few layers, deep ones included), every layer and
// point, and checks that the analyzer puts the first mismatch exactly where
// the fault was planted, and finds nothing without one.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { analyzeRuns, type AnalysisRow } from './analyze/analyze.js';
import { loadTraceFile } from './analyze/load.js';
import { UsageError } from './errors.js';
import { checkFault, expectedKvRow, expectedMismatch, faultInfo, faultLabel, FAULT_NAMES, type FaultName, type FaultSpec } from './faults.js';
import { resolveTraceOptions, type SelftestOptions } from './options.js';
import { newRunId, openSession, planTrace, traceRun } from './run.js';
import { POINTS, STAGE_POINTS, type Point } from './trace/points.js';
import { TraceWriter } from './trace/writer.js';

export interface Where {
  layer: number | null;
  point: Point | 'NONE';
}

/** A KV cache row: (layer, position); layer null when the cache equals the prefill's. */
export interface KvRow {
  layer: number | null;
  position: number | null;
}

export interface SelftestCase {
  prompt: string;
  /** 'none' for the run without a fault. */
  fault: string;
  expected: Where;
  found: Where | null;
  mae: number | null;
  max_abs: number | null;
  /** The KV check's first differing row after decode0: expected and found. */
  kv_expected: KvRow;
  kv_found: KvRow | null;
  /** pass, fail, or skip when the prompt is too short for the fault to change anything. */
  result: 'pass' | 'fail' | 'skip';
  note?: string;
  run_id: string;
}

export interface SelftestResult {
  model: string;
  /** Points traced in every layer and after the last. */
  points: Point[];
  backend: string;
  device: string;
  cases: SelftestCase[];
  passed: number;
  failed: number;
  skipped: number;
  seconds: number;
  /** The trace of every case, when it was kept. */
  trace: string | null;
}

/** Layered faults go at the first, middle and last layer unless told otherwise. */
export function defaultFaultLayers(nLayers: number): number[] {
  return [...new Set([0, nLayers >> 1, nLayers - 1])];
}

/** A planted fault: where selftest expects its first mismatch with stage points only, and with sub-stages traced. */
export interface FaultListing {
  name: FaultName;
  /** Takes @LAYER. */
  layered: boolean;
  /** The expected first mismatch's point ('-': none of the points it corrupts is traced). */
  at_stage_points: Point | '-';
  /** The same with every point traced, sub-stages included (selftest's default). */
  at_every_point: Point | '-';
  description: string;
}

export function listFaults(): FaultListing[] {
  const at = (n: FaultName, points: readonly Point[]) => expectedMismatch({ name: n }, new Set(points))?.point ?? '-';
  return FAULT_NAMES.map((n) => {
    const d = faultInfo(n);
    return { name: n, layered: d.layered, at_stage_points: at(n, STAGE_POINTS), at_every_point: at(n, POINTS), description: d.description };
  });
}

export function formatFaults(faults: FaultListing[]): string {
  return [
    '| fault | @LAYER | first mismatch (stage points) | (sub-stages traced) | what it plants in decode calls |',
    '|---|---|---|---|---|',
    ...faults.map((f) => `| ${f.name} | ${f.layered ? 'yes' : 'no'} | ${f.at_stage_points} | ${f.at_every_point} | ${f.description} |`),
  ].join('\n');
}

function whereEq(a: Where, b: Where): boolean {
  return a.layer === b.layer && a.point === b.point;
}

export function runSelftest(opts: SelftestOptions, log: (line: string) => void = () => {}): SelftestResult {
  const t0 = performance.now();
  // The plan of the unfaulted trace: every layer and point, E1, prefill_last and decode0.
  const keepDir = opts.out === undefined ? mkdtempSync(join(tmpdir(), 'greta-selftest-')) : null;
  const out = resolve(opts.out ?? join(keepDir!, 'selftest.jsonl'));
  const base = resolveTraceOptions(
    { prompt: opts.prompt.join(','), model: opts.model, backend: opts.backend, exp: 'E1', points: opts.points.join(','), 'kv-check': true, out },
    {},
  );
  const traced = new Set(base.points);
  const plan = planTrace(base);
  const { model } = plan;
  const nLayers = model.config.num_hidden_layers;
  const layers = typeof opts.faultLayers === 'string' ? defaultFaultLayers(nLayers) : opts.faultLayers;
  const badLayer = layers.find((l) => l >= nLayers);
  if (badLayer !== undefined) {
    throw new UsageError(`--fault-layers: layer ${badLayer} is out of range for ${model.name} (allowed: 0-${nLayers - 1})`);
  }
  const specs: (FaultSpec | null)[] = [null];
  for (const name of opts.faults) {
    if (faultInfo(name).layered) for (const layer of layers) specs.push({ name, layer });
    else specs.push({ name });
  }
  for (const f of specs) {
    if (!f) continue;
    checkFault(f, { cfg: model.config }, model.name);
    if (!expectedMismatch(f, traced)) throw new UsageError(`--points: none of the points ${f.name} corrupts is traced (it corrupts ${faultInfo(f.name).corrupts.join(', ')})`);
  }
  const maxTokens = Math.max(...plan.prompts.map((p) => p.ids.length)) + 1;

  const session = openSession(model, base.backend, maxTokens, log);
  const runIds: string[] = [];
  try {
    const writer = new TraceWriter(out);
    try {
      specs.forEach((fault, i) => {
        const runId = newRunId();
        runIds.push(runId);
        traceRun(session, writer, { ...plan, runId, opts: { ...plan.opts, ...(fault ? { fault } : {}) } });
        log(`selftest: ${fault ? faultLabel(fault) : 'none'} traced (${i + 1}/${specs.length})`);
      });
    } finally {
      writer.close();
    }
  } finally {
    session.close();
  }

  const runs = loadTraceFile(out);
  const rows = new Map<string, AnalysisRow>();
  for (const r of analyzeRuns(runs)) rows.set(`${r.run_id}|${r.prompt}`, r);
  const kvChecks = new Map(runs.flatMap((r) => r.kvChecks).map((c) => [`${c.run_id}|${c.prompt}`, c]));
  const cases: SelftestCase[] = [];
  specs.forEach((fault, i) => {
    for (const p of plan.prompts) {
      const row = rows.get(`${runIds[i]}|${p.name}`);
      const expected: Where = (fault ? expectedMismatch(fault, traced) : null) ?? { layer: null, point: 'NONE' };
      const found: Where | null = row ? { layer: row.first_mismatch_layer, point: row.first_mismatch_stage } : null;
      const minKeys = fault ? faultInfo(fault.name).minKeys : undefined;
      // E1's decode0 attends to n keys (positions 0..n-1).
      const tooShort = minKeys !== undefined && p.ids.length <= minKeys;
      const kv = kvChecks.get(`${runIds[i]}|${p.name}`);
      const kvFound: KvRow | null = kv ? { layer: kv.first?.layer ?? null, position: kv.first?.position ?? null } : null;
      const kvExpected = fault ? expectedKvRow(fault, p.ids.length - 1, nLayers) : { layer: null, position: null };
      const pass =
        found !== null && whereEq(found, expected) && kvFound !== null && kvFound.layer === kvExpected.layer && kvFound.position === kvExpected.position;
      cases.push({
        prompt: p.name,
        fault: fault ? faultLabel(fault) : 'none',
        expected,
        found,
        mae: row?.first_mismatch?.mae ?? (row ? 0 : null),
        max_abs: row?.first_mismatch?.max_abs ?? (row ? 0 : null),
        kv_expected: kvExpected,
        kv_found: kvFound,
        result: tooShort && !pass ? 'skip' : pass ? 'pass' : 'fail',
        ...(tooShort && !pass ? { note: `prompt has ${p.ids.length} tokens; the fault needs more than ${minKeys} keys` } : {}),
        run_id: runIds[i]!,
      });
    }
  });
  const failed = cases.filter((c) => c.result === 'fail').length;
  const skipped = cases.filter((c) => c.result === 'skip').length;
  let trace: string | null = out;
  if (keepDir && failed === 0) {
    rmSync(keepDir, { recursive: true, force: true });
    trace = null;
  }
  return {
    model: model.name,
    points: base.points,
    backend: session.backend.name,
    device: session.backend.device,
    cases,
    passed: cases.length - failed - skipped,
    failed,
    skipped,
    seconds: (performance.now() - t0) / 1e3,
    trace,
  };
}

const fmtWhere = (w: Where | null) =>
  w === null ? 'no data' : w.point === 'NONE' ? 'NONE' : `${w.layer === null ? 'final' : `layer ${w.layer}`} ${w.point}`;
// Infinite: the rows differ in width (e.g. decode attends to one key fewer), not in value.
const fmtNum = (v: number | null) => (v === null ? '-' : v === 0 ? '0' : v === Infinity ? 'widths differ' : v.toExponential(3));
const fmtKv = (k: KvRow | null) => (k === null ? 'no data' : k.layer === null ? 'equal' : `layer ${k.layer} pos ${k.position}`);

export function formatSelftest(r: SelftestResult): string {
  const lines = [
    '| prompt | fault | expected first mismatch | found | mae | max_abs | kv-check expected | found | result |',
    '|---|---|---|---|---:|---:|---|---|---|',
    ...r.cases.map(
      (c) =>
        `| ${c.prompt} | ${c.fault} | ${fmtWhere(c.expected)} | ${fmtWhere(c.found)} | ${fmtNum(c.mae)} | ${fmtNum(c.max_abs)} | ` +
        `${fmtKv(c.kv_expected)} | ${fmtKv(c.kv_found)} | ${c.result}${c.note ? ` (${c.note})` : ''} |`,
    ),
    '',
    `selftest: ${r.cases.length} cases on ${r.model}, ${r.backend} (${r.device}), E1, every layer, ` +
      `${r.points.length} points (${r.points.join(', ')}): ${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ''} in ${r.seconds.toFixed(1)} s`,
  ];
  if (r.trace) lines.push(`trace kept: ${r.trace}`);
  return lines.join('\n');
}
