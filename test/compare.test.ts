// greta compare on real traces: two backends within the measured fp32 bounds,
// a planted one-ulp fault found exactly where it is, rows perturbed in a copy
// of a sidecar, positions that differ, records on one side only, bad input.
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTraceFile } from '../src/analyze/load.js';
import { COMPARE_EXIT, compareFiles, formatCompare, FP32_REL_L2, FP32_REL_L2_OTHER } from '../src/compare/compare.js';
import { packageRoot } from '../src/native.js';
import { STAGE_POINTS } from '../src/trace/points.js';
import { sidecarPath } from '../src/trace/writer.js';
import { tempDir, traceWith } from './helpers.js';

const CLI = join(packageRoot(), 'dist', 'cli', 'main.js');

function greta(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH }, cwd: tempDir() });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A copy of a trace (JSONL and sidecar) in a new directory, its lines rewritten by `edit`. */
function copyTrace(trace: string, edit: (rec: Record<string, unknown>) => Record<string, unknown> = (r) => r): string {
  const out = join(tempDir(), 'trace.jsonl'); // records name their sidecar by file name
  const lines = readFileSync(trace, 'utf8').trim().split('\n');
  writeFileSync(out, lines.map((l) => JSON.stringify(edit(JSON.parse(l) as Record<string, unknown>))).join('\n') + '\n');
  copyFileSync(sidecarPath(trace), sidecarPath(out));
  return out;
}

describe('cpu against cpu-fp64', () => {
  let fp32: string;
  let fp64: string;
  beforeAll(() => {
    const flags = { prompt: 'p0_short,p4_sys,p6_long' };
    fp64 = traceWith({ ...flags, backend: 'cpu-fp64' }).out;
    fp32 = traceWith({ ...flags, backend: 'cpu' }).out;
  });

  it('every pair is within the default fp32 bound of its point, and measurably not exact', () => {
    const r = compareFiles(fp64, fp32);
    expect(r.mode).toBe('fp32');
    expect(r.mode_reason).toMatch(/different backends cpu-fp64, cpu/);
    expect(r.first).toBeNull();
    expect(r.exit).toBe(COMPARE_EXIT.ok);
    // 3 prompts x 2 phases x (32 layers x 7 points + 3 final points)
    expect(r.pairs).toHaveLength(3 * 2 * (32 * 7 + 3));
    expect(r.only_base).toEqual([]);
    expect(r.only_test).toEqual([]);
    for (const p of r.points) {
      expect(p.bound).toBe(FP32_REL_L2[p.point] ?? FP32_REL_L2_OTHER);
      // fp32 rounding is there (the test would pass on two identical traces otherwise)...
      expect(p.worst_rel_l2!, p.point).toBeGreaterThan(1e-8);
      // ...and the bound keeps a margin over it: at least 5x.
      expect(p.worst_rel_l2! * 5, p.point).toBeLessThan(p.bound);
    }
    for (const p of r.pairs) expect(p.cosine!).toBeGreaterThan(1 - 1e-9);
    // Error grows with depth: the last layer's worst is above the first's in every phase.
    for (const ph of r.phase_names) {
      expect(r.layers.at(-2)!.phases[ph]!.rel_l2).toBeGreaterThan(r.layers[0]!.phases[ph]!.rel_l2);
    }
  });

  it('the CLI exits 0 and prints the bounds, the per-layer table and the per-point worsts', () => {
    const c = greta(['compare', fp64, fp32]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toContain('first beyond tolerance: none (1362 common pairs within tolerance)');
    expect(c.stdout).toMatch(/^tolerance: different backends cpu-fp64, cpu: relative L2 within the fp32-against-fp64 bound of each point; rel_l2 <= 5e-5 for every point$/m);
    expect(c.stdout).toMatch(/^\| layer \| prefill_last \| decode0 \|$/m);
    expect(c.stdout).toMatch(/^\| 31 \| \d\.\d{3}e-\d \w+ \| \d\.\d{3}e-\d \w+ \|$/m);
    expect(c.stdout).toMatch(/^\| final \| /m);
    expect(c.stdout).toMatch(/^\| mlp_out \| 192 \| 0 \| \d\.\d{3}e-\d \| 5e-5 \|$/m);
    // A bound tighter than fp32 rounding catches it: exit 1.
    const t = greta(['compare', '--tol', '1e-9', fp64, fp32]);
    expect(t.code).toBe(1);
    expect(t.stdout).toMatch(/^first beyond tolerance: p0_short E1 prefill_last layer 0 \w+: beyond rel_l2 <= 1e-9; mae /m);
  });
});

describe('same backend and model: exact', () => {
  let clean: string;
  let ulp: string;
  beforeAll(() => {
    const flags = { prompt: 'p4_sys', layers: '6,7,8', steps: '2', phases: 'prefill_last,decode0,decode1' };
    clean = traceWith(flags).out;
    ulp = traceWith({ ...flags, fault: 'ulp@7' }).out;
  });

  it('two clean traces are bit-identical: exit 0', () => {
    const r = compareFiles(clean, traceWith({ prompt: 'p4_sys', layers: '6,7,8', steps: '2', phases: 'prefill_last,decode0,decode1' }).out);
    expect(r.mode).toBe('exact');
    expect(r.mode_reason).toBe('same backend (cpu) and model (synthetic:tiny): bits must be equal');
    expect(r.pairs.every((p) => p.ok && p.bound === 0 && p.max_abs === 0 && p.rel_l2 === 0)).toBe(true);
    expect(r.exit).toBe(0);
  });

  it('a one-ulp fault is flagged first at (decode0, layer 7, x_out); prefill_last matches entirely', () => {
    const r = compareFiles(clean, ulp);
    expect(r.first).toMatchObject({ prompt: 'p4_sys', exp: 'E1', phase: 'decode0', layer: 7, point: 'x_out', problem: 'bits', bound: 0 });
    // One element of 64 moved by one ulp.
    expect(r.first!.max_abs).toBeGreaterThan(0);
    expect(r.first!.max_abs).toBeLessThan(1e-5);
    expect(r.first!.mae).toBe(r.first!.max_abs / 64);
    const pre = r.phases.find((p) => p.phase === 'prefill_last')!;
    expect(pre).toMatchObject({ pairs: 3 * 7 + 3, beyond: 0, first: null });
    // Every decode0 pair before it in forward order is exact.
    const dec = r.pairs.filter((p) => p.phase === 'decode0');
    const i = dec.indexOf(r.first!);
    expect(dec.slice(0, i).every((p) => p.ok)).toBe(true);
    expect(dec.slice(0, i).map((p) => `${p.layer} ${p.point}`)).toEqual([
      ...['x_in', 'attn_out', 'wo_out', 'x_after_attn', 'ffn_norm', 'mlp_out', 'x_out'].map((p) => `6 ${p}`),
      ...['x_in', 'attn_out', 'wo_out', 'x_after_attn', 'ffn_norm', 'mlp_out'].map((p) => `7 ${p}`),
    ]);
    expect(r.exit).toBe(COMPARE_EXIT.beyond);
    expect(formatCompare(r)).toMatch(/^first beyond tolerance: p4_sys E1 decode0 layer 7 x_out: beyond bits equal; mae \S+, max_abs \S+, rel_l2 \S+, cosine 1\.000000000; base token \d+ index 0 pos \d+; test token \d+ index 0 pos \d+$/m);

    const c = greta(['compare', clean, ulp]);
    expect(c.code).toBe(1);
    expect(c.stdout).toContain('first beyond tolerance: p4_sys E1 decode0 layer 7 x_out: beyond bits equal');
    expect(c.stdout).toMatch(/^\| p4_sys \| E1 \| prefill_last \| 24 \| 0 \| - \| 0 \(layer 6 x_in\) \|$/m);
    expect(c.stdout).toMatch(/^\| p4_sys \| E1 \| decode0 \| 24 \| \d+ \| layer 7 x_out \|/m);
  });

  it('--tol and --tol-point bound the relative L2 instead: one ulp passes a loose bound', () => {
    expect(compareFiles(clean, ulp, { tol: 1e-4 }).exit).toBe(0);
    // A bound on x_out alone keeps the other points exact: the first miss moves to layer 8.
    const r = compareFiles(clean, ulp, { tolPoint: { x_out: 1e-4 } });
    expect(r.first).toMatchObject({ phase: 'decode0', layer: 8, point: 'x_in', problem: 'bits' });
    expect(r.bounds).toMatchObject({ x_out: 1e-4, x_in: 0 });
    const c = greta(['compare', '--tol-point', 'x_out=1e-4,x_in=1e-4,attn_out=1e-4,wo_out=1e-4,x_after_attn=1e-4,ffn_norm=1e-4,mlp_out=1e-4,final_norm=1e-3,lm_head_in=1e-3,logits=1e-3', clean, ulp]);
    expect(c.code, c.stdout).toBe(0);
    expect(c.stdout).toMatch(/tolerance: same backend \(cpu\) and model \(synthetic:tiny\): bits must be equal; x_in 1e-4, .*logits 1e-3/);
  });

  it('--json carries every pair with its metrics', () => {
    const c = greta(['compare', '--json', clean, ulp]);
    expect(c.code).toBe(1);
    const j = JSON.parse(c.stdout) as { pairs: Record<string, unknown>[]; first: Record<string, unknown>; mode: string };
    expect(j.mode).toBe('exact');
    expect(j.pairs).toHaveLength(3 * (3 * 7 + 3));
    expect(j.first).toMatchObject({ phase: 'decode0', layer: 7, point: 'x_out', ok: false });
    for (const k of ['mae', 'max_abs', 'rel_l2', 'cosine', 'bound', 'base', 'test']) expect(j.first).toHaveProperty(k);
  });
});

describe('pairing', () => {
  it('a row perturbed in a copy of the sidecar is caught at its pair, and only there', () => {
    const t = traceWith({ prompt: 'p0_short', layers: '0,1' });
    const copy = copyTrace(t.out);
    const run = loadTraceFile(copy)[0]!;
    const target = run.stages.find((s) => s.phase === 'decode0' && s.layer === 1 && s.point === 'wo_out')!;
    // Element 1 is outside the record's sample (every 4th of 64), so the record still matches its row.
    expect(target.sample.indices).not.toContain(1);
    const buf = readFileSync(sidecarPath(copy));
    const at = target.row.offset + 4;
    buf.writeFloatLE(buf.readFloatLE(at) * 1.001 + 1e-3, at);
    writeFileSync(sidecarPath(copy), buf);
    const r = compareFiles(t.out, copy);
    expect(r.pairs.filter((p) => !p.ok).map((p) => `${p.phase} ${p.layer} ${p.point}`)).toEqual(['decode0 1 wo_out']);
    expect(r.first!.max_abs).toBeGreaterThan(1e-4);
  });

  it('a token or position that differs is a mismatch of position, reported as such', () => {
    const t = traceWith({ prompt: 'p0_short', layers: '0' });
    const moved = copyTrace(t.out, (r) => (r.type === 'stage' && r.phase === 'decode0' && r.point === 'attn_out' ? { ...r, pos_id: (r.pos_id as number) + 1 } : r));
    const r = compareFiles(t.out, moved, { tol: 1 });
    expect(r.first).toMatchObject({ phase: 'decode0', layer: 0, point: 'attn_out', problem: 'position', rel_l2: 0 });
    expect(r.first!.detail).toMatch(/^pos_id (\d+) vs (\d+)$/);
    expect(formatCompare(r)).toMatch(/first beyond tolerance: p0_short E1 decode0 layer 0 attn_out: position differs \(pos_id \d+ vs \d+\)/);
    expect(r.exit).toBe(1);
  });

  it('lists the records on one side only, grouped by phase with their layers', () => {
    const a = traceWith({ prompt: 'p0_short', layers: '0,1', points: 'x_in,x_out,logits' });
    const b = traceWith({ prompt: 'p0_short', layers: '1,2,3', points: 'x_in,x_out' });
    const r = compareFiles(a.out, b.out);
    expect(r.pairs.map((p) => `${p.phase} ${p.layer} ${p.point}`)).toEqual(['prefill_last 1 x_in', 'prefill_last 1 x_out', 'decode0 1 x_in', 'decode0 1 x_out']);
    expect(r.only_base).toEqual([
      'p0_short E1 prefill_last layer 0 x_in', 'p0_short E1 prefill_last layer 0 x_out', 'p0_short E1 prefill_last logits',
      'p0_short E1 decode0 layer 0 x_in', 'p0_short E1 decode0 layer 0 x_out', 'p0_short E1 decode0 logits',
    ]);
    expect(r.only_test).toHaveLength(2 * 2 * 2);
    expect(r.exit).toBe(0);
    const text = formatCompare(r);
    expect(text).toContain('only in base (6 records): p0_short E1 prefill_last: x_in (layers 0), x_out (layers 0), logits; p0_short E1 decode0: x_in (layers 0), x_out (layers 0), logits');
    expect(text).toContain('only in test (8 records): p0_short E1 prefill_last: x_in (layers 2-3), x_out (layers 2-3); p0_short E1 decode0: x_in (layers 2-3), x_out (layers 2-3)');
  });

  it('--run picks runs of a file holding several; an unfinished run exits 3 when all else matches', () => {
    const a = traceWith({ prompt: 'p0_short', layers: '0' });
    const b = traceWith({ prompt: 'p0_short', layers: '0', out: a.out });
    const amb = greta(['compare', a.out, a.out]);
    expect(amb.code).toBe(2);
    expect(amb.stderr.trim()).toBe(`gretacore: --run: BASE '${a.out}' holds 2 runs; name one (runs: ${a.runId}, ${b.runId})`);
    const ok = greta(['compare', '--run', a.runId, '--run', b.runId, a.out, a.out]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`base: ${a.out}, run ${a.runId}:`);
    expect(ok.stdout).toContain(`test: ${a.out}, run ${b.runId}:`);
    // One run named in a file of two: the other is TEST.
    const other = compareFiles(a.out, a.out, { runs: [b.runId] });
    expect([other.base.run_id, other.test.run_id]).toEqual([b.runId, a.runId]);
    const unknown = greta(['compare', '--run', 'nope', a.out, a.out]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim()).toBe(`gretacore: --run: no run 'nope' in BASE or TEST (runs: ${a.runId}, ${b.runId})`);

    // The second run loses its end record: whatever matches, the answer is not whole.
    const text = readFileSync(a.out, 'utf8');
    const last = text.trimEnd().split('\n').at(-1)!;
    truncateSync(a.out, Buffer.byteLength(text) - Buffer.byteLength(last) - 1);
    const cut = greta(['compare', '--run', a.runId, '--run', b.runId, a.out, a.out]);
    expect(cut.code).toBe(3);
    expect(cut.stdout).toContain(`test: ${a.out}, run ${b.runId}: synthetic:tiny on cpu`);
    expect(cut.stdout).toMatch(/NOT FINISHED \(no end record\)/);
    expect(cut.stdout).toMatch(new RegExp(`^compare: 20 pairs, 0 beyond tolerance, 0 only in base, 0 only in test; run ${b.runId} did not finish$`, 'm'));
  });
});

describe('greta compare input', () => {
  it('--help documents every option, the default bounds and the exit codes', () => {
    const h = greta(['compare', '--help']);
    expect(h.code).toBe(0);
    for (const f of ['--tol', '--tol-point', '--run', '--json', '--stats', '--help']) expect(h.stdout).toContain(f + ' ');
    for (const p of STAGE_POINTS) expect(h.stdout).toContain(`${p} ${FP32_REL_L2[p]!.toExponential()}`);
    expect(h.stdout).toContain(`other points ${FP32_REL_L2_OTHER.toExponential()}`);
    expect(h.stdout).toMatch(/Exit codes: 0 every common pair within tolerance, 1 a pair beyond it,\n2 bad input .*\n3 every pair within tolerance but a run did not finish/);
  });

  it('--stats prints time, rows read and peak RSS', () => {
    const t = traceWith({ prompt: 'p0_short', layers: '0' });
    const c = greta(['compare', '--stats', t.out, t.out]);
    expect(c.code).toBe(0);
    expect(c.stderr).toMatch(/^compare: 20 pairs, [\d.]+ MB of rows \(40 rows\) in [\d.]+ s; peak RSS [\d.]+ MB$/m);
  });

  const dir = tempDir();
  const one = join(dir, 'one.jsonl');
  const other = join(dir, 'other.jsonl');
  beforeAll(() => {
    traceWith({ prompt: 'p0_short', layers: '0', points: 'x_in', out: one });
    traceWith({ prompt: 'p4_sys', layers: '0', points: 'x_in', out: other });
  });
  const cases: [string, () => string[], RegExp][] = [
    ['one file', () => [one], /^gretacore: compare: give two trace files, BASE\.jsonl TEST\.jsonl \(got 1; see --help\)$/],
    ['a missing file', () => [one, join(dir, 'none.jsonl')], /^gretacore: cannot read trace '.*none\.jsonl' \(ENOENT\)$/],
    ['a bad --tol', () => ['--tol', 'x', one, one], /^gretacore: --tol: 'x' is not a number >= 0$/],
    ['an empty --tol-point item', () => ['--tol-point', 'x_in=1e-5,', one, one], /^gretacore: --tol-point: 'x_in=1e-5,' has an empty item \(allowed: POINT=BOUND items, comma-separated, POINT one of x_in, .*\)$/],
    ['an unknown --tol-point point', () => ['--tol-point', 'qkv=1', one, one], /^gretacore: --tol-point: unknown point 'qkv' \(allowed: x_in, q, k, v, scores, .*logits, x_after_mlp, final_rms\)$/],
    ['a --tol-point bound that is not a number', () => ['--tol-point', 'logits=big', one, one], /^gretacore: --tol-point logits: 'big' is not a number >= 0$/],
    ['a --tol-point item without a bound', () => ['--tol-point', 'logits', one, one], /^gretacore: --tol-point: 'logits' is not POINT=BOUND/],
    ['an unknown flag', () => ['--tolerance', '1', one, one], /^gretacore: Unknown option '--tolerance'$/],
    ['nothing in common', () => [one, other], /^gretacore: compare: BASE run \S+ and TEST run \S+ share no \(prompt, exp, phase, layer, point\) \(BASE has 2 stage records, TEST 2\)$/],
  ];
  for (const [name, args, re] of cases) {
    it(`${name}: one line, exit 2`, () => {
      const r = greta(['compare', ...args()]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(re);
    });
  }
});
