// The analyzer must find a real decode-only bug where it starts. The bug here
// is the kind the StageTrace reports hunted: decode reads a different WO for
// one layer (a wrong buffer), while prefill is right.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeRuns, formatTable, toJson } from '../src/analyze/analyze.js';
import { loadTraceFile } from '../src/analyze/load.js';
import { Engine } from '../src/model/engine.js';
import { SYNTHETIC_MODELS } from '../src/model/models.js';
import { syntheticWeights } from '../src/model/weights.js';
import { createBackend } from '../src/native.js';
import { PROMPTS, tokenize } from '../src/prompts.js';
import { LAYER_POINTS, POINTS } from '../src/trace/points.js';
import { TRACE_FORMAT_VERSION, TraceRecordSchema } from '../src/trace/schema.js';
import { StageTracer } from '../src/trace/tracer.js';
import { sidecarPath, TraceWriter } from '../src/trace/writer.js';
import { tempDir, traceWith } from './helpers.js';

/** E1 by hand, with decode reading a wrong WO at one layer. Returns the trace path. */
function e1WithDecodeEngine(buggyLayer: number, prompts: string[], finish = true): string {
  const spec = SYNTHETIC_MODELS['synthetic:tiny']!;
  const b = createBackend('cpu');
  const w = syntheticWeights(b, spec.config, spec.weightDtype, spec.seed);
  const good = new Engine(b, spec.config, w);
  const badWo = b.alloc('bf16', w.layers[buggyLayer]!.wo.shape);
  b.fillUniform(badWo, 99n, Math.sqrt(3 / spec.config.hidden_size), 0);
  const bad = new Engine(b, spec.config, { ...w, layers: w.layers.map((l, i) => (i === buggyLayer ? { ...l, wo: badWo } : l)) });

  const out = join(tempDir(), 'bug.jsonl');
  const writer = new TraceWriter(out);
  writer.write({
    type: 'header', format: TRACE_FORMAT_VERSION, run_id: 'bug', created_at: new Date().toISOString(),
    tool: { name: 'gretacore', version: 'test' }, model: { name: spec.name, weight_dtype: spec.weightDtype },
    config: spec.config, backend: b.name, device: b.device, git_commit: null, options: {},
    prompts: prompts.map((p) => ({ name: p, n_tokens: tokenize(PROMPTS[p]!).length })),
  });
  const tracer = new StageTracer(b, writer, 'bug', {
    layers: new Set([0, 1, 2, 15, 31]), points: new Set(POINTS), phases: new Set(['prefill_last', 'decode0']),
    debugInput: true, topk: 5,
  });
  for (const p of prompts) {
    const ids = tokenize(PROMPTS[p]!);
    const n = ids.length;
    good.forward(ids, 0, good.newCache(n), tracer.phase(p, 'E1', 'prefill_last'));
    const cache = good.newCache(n);
    good.forward(ids.slice(0, n - 1), 0, cache);
    bad.forward([ids[n - 1]!], n - 1, cache, tracer.phase(p, 'E1', 'decode0'));
  }
  if (finish) writer.write({ type: 'end', run_id: 'bug', status: 'ok', elapsed_ms: 0, results: [] });
  writer.close();
  return out;
}

describe('analyzer', () => {
  it('finds a decode-only WO bug at its layer and point, with the seeds table columns', () => {
    const out = e1WithDecodeEngine(15, ['p0_short', 'p4_sys']);
    const rows = analyzeRuns(loadTraceFile(out));
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r.first_mismatch_stage).toBe('wo_out');
      expect(r.first_mismatch_layer).toBe(15);
      expect(r.first_mismatch!.mae).toBeGreaterThan(1e-3);
      // attn_out at the bug's layer still matches exactly; the residual inherits the error.
      expect(r.point_mae.attn_out).toBe(0);
      expect(r.point_mae.x_after_attn).toBeGreaterThan(0);
      // Layers before the bug are bit-identical.
      expect(r.comparisons.filter((c) => c.layer !== null && c.layer < 15).every((c) => c.equal)).toBe(true);
    }
    const table = formatTable(rows);
    expect(table.split('\n')[0]).toBe(
      '| prompt | exp | first_mismatch_stage | first_mismatch_layer | ' +
        POINTS.map((p) => `${p}_mae`).join(' | ') +
        ' | prefill_last_top1 | decode0_top1 | collapse |',
    );
    expect(table).toContain('| p4_sys | E1 | wo_out | 15 |');
    expect(table).toMatch(/first mismatch at layer 15 wo_out: mae \d/);

    const json = toJson(rows) as { rows: Record<string, unknown>[] };
    expect(json.rows[0]).toMatchObject({ prompt: 'p0_short', exp: 'E1', first_mismatch_stage: 'wo_out', first_mismatch_layer: 15 });
    expect(typeof json.rows[0]!.wo_out_mae).toBe('number');
    expect(json.rows[0]!).toHaveProperty('prefill_last_top1');
    expect(json.rows[0]!).toHaveProperty('collapse');
  });

  it('marks collapse when decode0 gives one token for prompts whose prefill top-1s differ', () => {
    // A correct engine: decode0 follows each prompt, so nothing collapses.
    const ok = traceWith({ prompt: 'p0_short,p4_sys,p6_long', layers: '0' });
    const okRows = analyzeRuns(loadTraceFile(ok.out));
    expect(new Set(okRows.map((r) => r.prefill_last_top1)).size).toBe(3);
    expect(okRows.every((r) => !r.collapse && r.collapse_token === null)).toBe(true);

    // The symptom of the reports: every decode0 lands on one token. Rewrite the logits
    // records of a real trace that way and the analyzer must flag all three.
    const lines = readFileSync(ok.out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const l of lines) if (l.type === 'stage' && l.point === 'logits' && l.phase === 'decode0') l.topk.ids[0] = 96965;
    const forced = join(tempDir(), 'trace.jsonl'); // rows are referenced by file name
    writeFileSync(forced, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    copyFileSync(sidecarPath(ok.out), sidecarPath(forced));
    const rows = analyzeRuns(loadTraceFile(forced));
    for (const r of rows) expect(r).toMatchObject({ decode0_top1: 96965, collapse: true, collapse_token: 96965 });
    expect(formatTable(rows)).toContain('| true (96965) |');
  });

  it('reports the debug-input records with token, positions and embedding hash', () => {
    const out = e1WithDecodeEngine(15, ['p0_short']);
    const [run] = loadTraceFile(out);
    const inputs = run!.inputs;
    expect(inputs.map((i) => i.phase)).toEqual(['prefill_last', 'decode0']);
    expect(inputs[0]!.embedding_hash).toBe(inputs[1]!.embedding_hash);
    expect(inputs[0]!.pos_id).toBe(inputs[1]!.pos_id);
  });
});

describe('trace file', () => {
  it('every line validates against the schema; header, stage rows and end are present', () => {
    const run = traceWith({ prompt: 'p0_short,p5_ba', exp: 'E0,E1', layers: '0,31', 'debug-input': true, steps: '2', phases: 'prefill_last,decode0,decode1' });
    const lines = readFileSync(run.out, 'utf8').trim().split('\n');
    const recs = lines.map((l) => TraceRecordSchema.parse(JSON.parse(l)));
    expect(recs[0]!.type).toBe('header');
    expect(recs.at(-1)!.type).toBe('end');
    const header = recs[0] as Extract<(typeof recs)[number], { type: 'header' }>;
    expect(header.backend).toBe('cpu');
    expect(header.device).toMatch(/CPU/);
    expect(header.model.name).toBe('synthetic:tiny');
    expect(header.options).toMatchObject({ layers: [0, 31], exp: ['E0', 'E1'] });
    const stages = recs.filter((r) => r.type === 'stage');
    // 2 prompts x 2 exps x 3 phases x (2 layers x 7 points + 3 final points)
    expect(stages).toHaveLength(2 * 2 * 3 * (2 * LAYER_POINTS.length + 3));
    expect(recs.filter((r) => r.type === 'input')).toHaveLength(2 * 2 * 3);
    for (const s of stages) {
      if (s.type !== 'stage') continue;
      expect(s.sample.indices.length).toBe(16);
      if (s.point === 'logits') expect(s.topk!.ids).toHaveLength(5);
    }
  });

  it('a second run appends to the same file and keeps the first', () => {
    const a = traceWith({ prompt: 'p0_short', layers: '0' });
    const before = readFileSync(a.out, 'utf8');
    const b = traceWith({ prompt: 'p4_sys', layers: '0', out: a.out });
    expect(readFileSync(a.out, 'utf8').startsWith(before)).toBe(true);
    const runs = loadTraceFile(a.out);
    expect(runs.map((r) => r.header.run_id)).toEqual([a.runId, b.runId]);
    const rows = analyzeRuns(runs);
    expect(rows.map((r) => r.first_mismatch_stage)).toEqual(['NONE', 'NONE']);
  });
});
