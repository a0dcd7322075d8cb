// The analyzer must find a real decode-only bug where it starts. The bug here
// is the kind the StageTrace reports hunted: decode reads a different WO for
// one layer (a wrong buffer), while prefill is right.
import { copyFileSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analysisExitCode, analyzeFiles, analyzeRuns, analyzeTrace, ANALYZE_EXIT, formatAnalysis, formatTable, toJson } from '../src/analyze/analyze.js';
import { loadTraceFile, readLines, readTraceFile } from '../src/analyze/load.js';
import { Engine } from '../src/model/engine.js';
import { SYNTHETIC_MODELS } from '../src/model/models.js';
import { syntheticWeights } from '../src/model/weights.js';
import { createBackend } from '../src/native.js';
import { PROMPTS, tokenize } from '../src/prompts.js';
import { STAGE_POINTS } from '../src/trace/points.js';
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
    layers: new Set([0, 1, 2, 15, 31]), points: new Set(STAGE_POINTS), phases: new Set(['prefill_last', 'decode0']),
    debugInput: true, topk: 5, heads: null,
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
        STAGE_POINTS.map((p) => `${p}_mae`).join(' | ') +
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
    expect(stages).toHaveLength(2 * 2 * 3 * (2 * 7 + 3));
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

/** A copy of a trace with its lines rewritten by `edit` (null drops a line); rows are shared by file name. */
function rewrite(trace: string, edit: (rec: Record<string, unknown>, i: number) => Record<string, unknown> | Record<string, unknown>[] | null): string {
  const out = join(tempDir(), 'trace.jsonl');
  const lines = readFileSync(trace, 'utf8').trim().split('\n');
  const kept = lines.flatMap((l, i) => {
    const r = edit(JSON.parse(l) as Record<string, unknown>, i);
    return r === null ? [] : (Array.isArray(r) ? r : [r]).map((x) => JSON.stringify(x));
  });
  writeFileSync(out, kept.join('\n') + '\n');
  copyFileSync(sidecarPath(trace), sidecarPath(out));
  return out;
}

describe('rows that are not a real comparison', () => {
  it('a run without its end record is INCOMPLETE, never NONE, and analyzeRuns refuses it', () => {
    // The same bug-free layers as a finished run would give NONE for.
    const out = e1WithDecodeEngine(31, ['p0_short', 'p4_sys'], false);
    const rows = analyzeTrace(loadTraceFile(out));
    expect(rows.map((r) => [r.prompt, r.status, r.first_mismatch_stage])).toEqual([
      ['p0_short', 'incomplete', 'INCOMPLETE'],
      ['p4_sys', 'incomplete', 'INCOMPLETE'],
    ]);
    expect(rows[0]!.reason).toMatch(/^run bug in .*bug\.jsonl has no end record: it did not finish$/);
    // What was read is kept: layers 0-15 are equal, layer 31 is where the bug is.
    expect(rows[0]!.comparisons.length).toBe(5 * 7 + 3);
    const table = formatTable(rows);
    // No MAE column: nothing of an unfinished run is presented as a measurement.
    expect(table).toContain('| p0_short | E1 | INCOMPLETE | - | 2114 | 2114 | false |');
    expect(table).not.toMatch(/NONE/);
    expect(table).toMatch(/p0_short E1: INCOMPLETE: run bug .* did not finish; \d+ pairs read, first mismatch among them at layer 31 wo_out/);
    expect(analysisExitCode({ rows, problems: [] })).toBe(ANALYZE_EXIT.notCompared);
    expect(() => analyzeRuns(loadTraceFile(out))).toThrow(/p0_short E1 of run bug: INCOMPLETE: run bug in .* has no end record/);
  });

  it('a prompt or phase with nothing to pair is NO_DATA, with the reason', () => {
    const pre = traceWith({ prompt: 'p0_short', layers: '0', phases: 'prefill_last' });
    const [row] = analyzeTrace(loadTraceFile(pre.out));
    expect(row).toMatchObject({ status: 'no_data', first_mismatch_stage: 'NO_DATA', reason: 'no decode0 records', comparisons: [] });
    expect(formatTable([row!])).toMatch(/^\| p0_short \| E1 \| NO_DATA \| - \|/m);
    expect(formatTable([row!])).toContain('p0_short E1: NO_DATA: no decode0 records; nothing to compare');

    // The header promises p0_short and p4_sys; p4_sys's records are gone.
    const two = traceWith({ prompt: 'p0_short,p4_sys', layers: '0' });
    const cut = rewrite(two.out, (r) => (r.type === 'stage' && r.prompt === 'p4_sys' ? null : r));
    const a = analyzeFiles([cut]);
    expect(a.rows.map((r) => [r.prompt, r.first_mismatch_stage, r.reason])).toEqual([
      ['p0_short', 'NONE', null],
      ['p4_sys', 'NO_DATA', 'no stage records'],
    ]);
    expect(analysisExitCode(a)).toBe(ANALYZE_EXIT.notCompared);
    expect(analysisExitCode(analyzeFiles([two.out]))).toBe(ANALYZE_EXIT.ok);
  });

  it('a last line cut short marks its run INCOMPLETE and names the line; a bad line before the end is bad input', () => {
    const t = traceWith({ prompt: 'p0_short,p4_sys', layers: '0,1' });
    const text = readFileSync(t.out, 'utf8');
    const lines = text.trim().split('\n');
    // Keep the first 30 lines and half of the 31st, as a writer killed mid-line leaves it.
    const kept = lines.slice(0, 30).join('\n') + '\n' + lines[30]!.slice(0, 100);
    truncateSync(t.out, Buffer.byteLength(kept));
    const f = readTraceFile(t.out);
    expect(f.runs[0]!.cutLine).toBe(31);
    const a = analyzeFiles([t.out]);
    expect(a.rows.map((r) => r.first_mismatch_stage)).toEqual(['INCOMPLETE', 'INCOMPLETE']);
    expect(a.rows[0]!.reason).toBe(`run ${t.runId} in ${t.out} has no end record: it did not finish; ${t.out}:31 is cut short`);
    expect(formatAnalysis(a)).toContain(`${t.out}:31 is cut short`);

    // The same cut line with more after it is not an interrupted write.
    writeFileSync(t.out, kept + '\n' + lines[31] + '\n');
    expect(() => analyzeFiles([t.out])).toThrow(new RegExp(`^${t.out.replace(/[.]/g, '\\.')}:31: not a JSON line$`));
  });

  it('a header cut short belongs to no run: a problem of the file, not a crash', () => {
    const t = traceWith({ prompt: 'p0_short', layers: '0' });
    const header = readFileSync(t.out, 'utf8').split('\n')[0]!;
    writeFileSync(t.out, readFileSync(t.out, 'utf8') + header.slice(0, 12));
    const a = analyzeFiles([t.out]);
    expect(a.rows.map((r) => r.first_mismatch_stage)).toEqual(['NONE']);
    const n = readFileSync(t.out, 'utf8').split('\n').length;
    expect(a.problems).toEqual([`${t.out}:${n} is cut short and belongs to no run read: a run that did not finish`]);
    expect(analysisExitCode(a)).toBe(ANALYZE_EXIT.notCompared);
  });

  it('a run killed after its header: INCOMPLETE rows for what the header promised, else a problem', () => {
    const t = traceWith({ prompt: 'p0_short,p4_sys', layers: '0' });
    const header = JSON.parse(readFileSync(t.out, 'utf8').split('\n')[0]!) as { options: Record<string, unknown> };
    writeFileSync(t.out, JSON.stringify(header) + '\n');
    const a = analyzeFiles([t.out]);
    expect(a.rows.map((r) => [r.prompt, r.exp, r.first_mismatch_stage])).toEqual([['p0_short', 'E1', 'INCOMPLETE'], ['p4_sys', 'E1', 'INCOMPLETE']]);
    // A header from another writer that names no experiments: no row to show, still exit 3.
    delete header.options.exp;
    writeFileSync(t.out, JSON.stringify(header) + '\n');
    const b = analyzeFiles([t.out]);
    expect(b.rows).toEqual([]);
    expect(b.problems).toEqual([`run ${t.runId} in ${t.out} has no stage records and no end record: it did not finish`]);
    expect(analysisExitCode(b)).toBe(ANALYZE_EXIT.notCompared);
  });

  it('a record after its end, or a second record of one (phase, layer, point), is bad input naming the line', () => {
    const t = traceWith({ prompt: 'p0_short', layers: '0' });
    const lines = readFileSync(t.out, 'utf8').trim().split('\n');
    writeFileSync(t.out, [...lines, lines[1]].join('\n') + '\n');
    expect(() => analyzeFiles([t.out])).toThrow(`${t.out}:${lines.length + 1}: record of run ${t.runId} after its end record`);
    writeFileSync(t.out, [lines[0], lines[1], lines[1], ...lines.slice(2)].join('\n') + '\n');
    expect(() => analyzeFiles([t.out])).toThrow(`${t.out}:3: second record of p0_short E1 prefill_last layer 0 x_in in run ${t.runId} (first at line 2)`);
  });
});

describe('streaming', () => {
  it('reads lines across chunk boundaries, multi-byte characters and lines longer than a chunk', () => {
    const file = join(tempDir(), 'lines.txt');
    const lines = ['{"a":"ñandú 🦙"}', 'x'.repeat(50), '', 'é', 'last without newline ü'];
    writeFileSync(file, lines.join('\n'));
    for (const chunk of [1, 2, 3, 7, 64, 1 << 20]) {
      const got = [...readLines(file, chunk)];
      expect(got.map((l) => l.text), `chunk ${chunk}`).toEqual(lines);
      expect(got.map((l) => l.newline)).toEqual([true, true, true, true, false]);
      expect(got.map((l) => l.n)).toEqual([1, 2, 3, 4, 5]);
    }
  });

  it('analyzes a file of several runs as each run ends: same rows as reading it whole, one run at a time', () => {
    const a = traceWith({ prompt: 'p0_short', layers: '0,31' });
    traceWith({ prompt: 'p4_sys', layers: '0,31', fault: 'wo_layout@31', out: a.out });
    const streamed = analyzeFiles([a.out]);
    const whole = analyzeTrace(loadTraceFile(a.out));
    expect(streamed.rows).toEqual(whole);
    expect(streamed.rows.map((r) => [r.prompt, r.first_mismatch_stage, r.first_mismatch_layer])).toEqual([
      ['p0_short', 'NONE', null],
      ['p4_sys', 'wo_out', 31],
    ]);
    // Every row of both phases read once, 2 phases x (2 layers x 7 + 3) per run.
    expect(streamed.stats).toMatchObject({ files: 1, runs: 2, pairs: 2 * 17, rows_read: 2 * 2 * 17 });
  });
});

describe('per-head records', () => {
  it('pair by head: a head that differs is found at its head, the other head matches', () => {
    const t = traceWith({ prompt: 'p0_short', layers: '0', steps: '2', phases: 'prefill_last,decode0,decode1' });
    const recs = readFileSync(t.out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const find = (phase: string, point: string) => recs.find((r) => r.type === 'stage' && r.phase === phase && r.point === point)!;
    // Split attn_out of layer 0 into two "heads": head 0 is the row itself; head 1 of decode0
    // takes decode1's row, so only it departs.
    const out = rewrite(t.out, (r) => {
      if (r.type !== 'stage' || r.point !== 'attn_out' || r.phase === 'decode1') return r;
      const other = r.phase === 'decode0' ? find('decode1', 'attn_out') : r;
      return [{ ...r, head: 0 }, { ...other, phase: r.phase, head: 1 }];
    });
    const [row] = analyzeRuns(loadTraceFile(out));
    const heads = row!.comparisons.filter((c) => c.point === 'attn_out').map((c) => [c.head, c.equal]);
    expect(heads).toEqual([[0, true], [1, false]]);
    expect(row).toMatchObject({ first_mismatch_stage: 'attn_out', first_mismatch_layer: 0, first_mismatch: { head: 1 } });
    expect(formatTable([row!])).toMatch(/first mismatch at layer 0 attn_out head 1: mae/);
    const bad = rewrite(t.out, (r) => (r.type === 'stage' && r.point === 'x_in' ? { ...r, head: -1 } : r));
    expect(() => loadTraceFile(bad)).toThrow(/trace\.jsonl:2: not a trace record \(head: /);
  });
});
