// The fault zoo and the selftest on the CPU backend: every fault planted at
// two layers (one deep), found exactly there; nothing found without one; the
// prefill side untouched by any fault.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeRuns, formatTable } from '../src/analyze/analyze.js';
import { loadTraceFile, readRow } from '../src/analyze/load.js';
import { expectedMismatch, faultInfo, FAULT_NAMES, parseFaultSpec } from '../src/faults.js';
import { POINTS, STAGE_POINTS } from '../src/trace/points.js';
import { resolveSelftestOptions } from '../src/options.js';
import { runSelftest, type SelftestResult } from '../src/selftest.js';
import { tempDir, traceWith } from './helpers.js';

const LAYERS = [2, 30];

describe('selftest on cpu, synthetic:tiny, p4_sys', () => {
  let r: SelftestResult;
  let out: string;
  beforeAll(() => {
    out = join(tempDir(), 'selftest.jsonl');
    r = runSelftest(resolveSelftestOptions({ backend: 'cpu', 'fault-layers': LAYERS.join(','), out }, {}));
  }, 300_000);

  it('runs one case per fault and layer, plus the run without a fault', () => {
    const layered = FAULT_NAMES.filter((n) => faultInfo(n).layered).length;
    expect(r.cases.length).toBe(1 + layered * LAYERS.length + (FAULT_NAMES.length - layered));
    expect(r.cases[0]).toMatchObject({ fault: 'none', found: { point: 'NONE' }, result: 'pass', mae: 0 });
    expect(r.failed).toBe(0);
    expect(r.skipped).toBe(0);
    expect(r.trace).toBe(out);
  });

  for (const name of FAULT_NAMES) {
    const layers = faultInfo(name).layered ? LAYERS : [undefined];
    for (const layer of layers) {
      const label = layer === undefined ? name : `${name}@${layer}`;
      const where = expectedMismatch({ name, layer }, new Set(POINTS))!;
      it(`${label}: first mismatch exactly at its finest point, ${where.layer ?? 'final'} ${where.point}`, () => {
        const c = r.cases.find((x) => x.fault === label)!;
        expect(c.found).toEqual(c.expected);
        expect(c.expected).toEqual(where);
        expect(c.mae).toBeGreaterThan(0);
        expect(c.result).toBe('pass');
      });
    }
  }

  it('precision faults are tiny but found; the one-ulp fault is the floor', () => {
    const mae = (f: string) => r.cases.find((c) => c.fault === f)!.mae!;
    for (const l of LAYERS) {
      expect(mae(`matmul_order@${l}`)).toBeLessThan(1e-6);
      expect(mae(`attn_split@${l}`)).toBeLessThan(1e-6);
      // one element of 64 moved by one ulp of a value below 16: at most 2^-20 / 64.
      expect(mae(`ulp@${l}`)).toBeLessThanOrEqual(2 ** -20 / 64);
    }
  });

  it('faults act on decode only: every prefill_last row is the unfaulted run bit for bit', () => {
    const runs = loadTraceFile(out);
    expect(runs.length).toBe(r.cases.length);
    const clean = runs.find((x) => x.header.options.fault === undefined)!;
    const key = (s: { layer: number | null; point: string; head?: number }) => `${s.layer}:${s.point}:${s.head}`;
    const cleanHash = new Map(clean.stages.filter((s) => s.phase === 'prefill_last').map((s) => [key(s), s.hash]));
    for (const run of runs) {
      const pre = run.stages.filter((s) => s.phase === 'prefill_last');
      expect(pre.length).toBe(cleanHash.size);
      for (const s of pre) expect(s.hash, `${run.header.options.fault} ${key(s)}`).toBe(cleanHash.get(key(s)));
    }
  });

  it('sub-stages place attention faults inside attention: scale and stale KV at scores, key split at probs, RoPE at q', () => {
    const at = (f: string) => r.cases.find((c) => c.fault === f)!.found!.point;
    expect([at('attn_scale@30'), at('kv_stale@30'), at('kv_position@30'), at('attn_split@30'), at('position@30'), at('rope_theta@2')]).toEqual([
      'scores',
      'scores',
      'scores',
      'probs',
      'q',
      'q',
    ]);
  });

  it('the KV check names the planted stale or misplaced row, and finds the cache right when only the read is wrong', () => {
    const kv = (f: string) => r.cases.find((c) => c.fault === f)!.kv_found;
    const n = 60; // p4_sys tokens: E1's decode0 writes position 59
    expect(kv('none')).toEqual({ layer: null, position: null });
    expect(kv('kv_stale@30')).toEqual({ layer: 30, position: n - 1 });
    expect(kv('kv_position@2')).toEqual({ layer: 2, position: n - 2 });
    expect(kv('kv_length@2')).toEqual({ layer: 3, position: n - 1 });
    expect(kv('attn_scale@30')).toEqual({ layer: 31, position: n - 1 });
    expect(kv('lm_head_shift')).toEqual({ layer: null, position: null });
  });

  it('a decode row that attends to one key fewer differs in width: the note says so', () => {
    const runs = loadTraceFile(out).filter((x) => x.header.options.fault === 'kv_length@2');
    const [row] = analyzeRuns(runs);
    const first = row!.comparisons.find((c) => !c.equal)!;
    expect(first).toMatchObject({ layer: 2, point: 'scores', head: 0, widths: { prefill_last: 60, decode0: 59 } });
    expect(formatTable([row!])).toContain('first mismatch at layer 2 scores head 0: rows of different widths, prefill_last 60 and decode0 59');
  });

  it('the header names the planted fault and the analyzer reports it', () => {
    const runs = loadTraceFile(out).filter((x) => x.header.options.fault === 'wo_layout@30');
    expect(runs.length).toBe(1);
    const rows = analyzeRuns(runs);
    expect(rows[0]).toMatchObject({ fault: 'wo_layout@30', first_mismatch_stage: 'wo_out', first_mismatch_layer: 30 });
    expect(formatTable(rows)).toContain('has a planted fault wo_layout@30 (--fault)');
    // wo_out departs, its input attn_out does not.
    const cmp = rows[0]!.comparisons;
    expect(cmp.find((c) => c.layer === 30 && c.point === 'attn_out')!.equal).toBe(true);
    expect(readRow(runs[0]!, runs[0]!.stages.find((s) => s.layer === 30 && s.point === 'wo_out' && s.phase === 'decode0')!).length).toBe(64);
  });
});

describe('--fault in trace', () => {
  it('a fault at every layer departs at layer 0; the debug input record shows the wrong token', () => {
    const t = traceWith({ prompt: 'p4_sys', fault: 'residual_double', layers: '0,1', points: 'x_in,wo_out,x_after_attn' });
    const rows = analyzeRuns(loadTraceFile(t.out));
    expect(rows[0]).toMatchObject({ first_mismatch_stage: 'x_after_attn', first_mismatch_layer: 0, fault: 'residual_double' });

    const tok = traceWith({ prompt: 'p4_sys', fault: 'token', layers: '0', points: 'x_in', 'debug-input': true });
    const run = loadTraceFile(tok.out)[0]!;
    const [pre, dec] = ['prefill_last', 'decode0'].map((ph) => run.inputs.find((i) => i.phase === ph)!);
    expect(dec!.token_id).toBe(pre!.token_id + 1);
    expect(dec!.embedding_hash).not.toBe(pre!.embedding_hash);
  });

  it('a two-token prompt: the one-token prefill of E1 is not a decode call, so only decode0 is faulted', () => {
    const t = traceWith({ 'prompt-text': 'Hi', fault: 'residual_skip@0', layers: '0', points: 'x_in,x_after_attn' });
    const run = loadTraceFile(t.out)[0]!;
    expect(run.header.prompts[0]!.n_tokens).toBe(2);
    const rows = analyzeRuns([run]);
    expect(rows[0]).toMatchObject({ first_mismatch_stage: 'x_after_attn', first_mismatch_layer: 0 });
    // x_in of decode0 equals prefill_last's: the cache prefix was built unfaulted.
    expect(rows[0]!.comparisons.find((c) => c.point === 'x_in')!.equal).toBe(true);
  });

  it('--kv-check writes one record per prompt and experiment: equal when clean, E0 against a prefill that includes the decode token', () => {
    const t = traceWith({ prompt: 'p0_short,p4_sys', exp: 'E1,E0', 'kv-check': true, layers: '0', points: 'x_in' });
    const checks = loadTraceFile(t.out)[0]!.kvChecks;
    expect(checks.map((c) => `${c.prompt} ${c.exp} ${c.equal} ${c.positions}`)).toEqual([
      `p0_short E1 true ${checks[0]!.positions}`,
      `p0_short E0 true ${checks[0]!.positions + 1}`,
      'p4_sys E1 true 60',
      'p4_sys E0 true 61',
    ]);
    const bad = traceWith({ prompt: 'p4_sys', 'kv-check': true, fault: 'kv_position@4', layers: '0', points: 'x_in' });
    const [c] = loadTraceFile(bad.out)[0]!.kvChecks;
    expect(c).toMatchObject({ equal: false, first: { layer: 4, position: 58, kv_head: 0, tensor: 'k' }, layers_differing: Array.from({ length: 28 }, (_, i) => i + 4) });
    expect(c!.first!.max_abs).toBeGreaterThan(0);
  });

  it('parses NAME[@LAYER] and refuses what cannot be planted', () => {
    expect(parseFaultSpec('wo_layout@15')).toEqual({ name: 'wo_layout', layer: 15 });
    expect(parseFaultSpec('token')).toEqual({ name: 'token' });
    expect(parseFaultSpec('token@3')).toMatch(/acts outside the layers and takes no @LAYER/);
    expect(parseFaultSpec('wo_layout@x')).toMatch(/unknown fault 'wo_layout@x' \(allowed: token, position/);
    expect(() => traceWith({ prompt: 'p0_short', fault: 'ulp@32' })).toThrow(/--fault: layer 32 is out of range for synthetic:tiny \(allowed: 0-31\)/);
  });
});

describe('selftest at stage points only', () => {
  it('expects each fault at the stage point it first corrupts', () => {
    const faults = 'position,kv_stale,attn_split,wo_layout,matmul_fp16,lm_head_shift';
    const r = runSelftest(resolveSelftestOptions({ backend: 'cpu', faults, 'fault-layers': '9', points: STAGE_POINTS.join(',') }, {}));
    expect(r.failed).toBe(0);
    const at = (f: string) => r.cases.find((c) => c.fault === f)!.found;
    expect(at('position@9')).toEqual({ layer: 9, point: 'attn_out' });
    expect(at('kv_stale@9')).toEqual({ layer: 9, point: 'attn_out' });
    expect(at('attn_split@9')).toEqual({ layer: 9, point: 'attn_out' });
    expect(at('wo_layout@9')).toEqual({ layer: 9, point: 'wo_out' });
    expect(at('matmul_fp16@9')).toEqual({ layer: 9, point: 'mlp_out' });
    expect(at('lm_head_shift')).toEqual({ layer: null, point: 'logits' });
  }, 120_000);
});

describe('selftest options', () => {
  it('a prompt too short for the key-split fault is a skip, not a miss', () => {
    const o = resolveSelftestOptions({ backend: 'cpu', faults: 'attn_split,ulp', 'fault-layers': '5', 'prompt-text': undefined, prompt: 'p0_short' }, {});
    const r = runSelftest(o);
    const split = r.cases.find((c) => c.fault === 'attn_split@5')!;
    expect(split.result).toBe('skip');
    expect(split.note).toMatch(/needs more than 16 keys/);
    expect(r.cases.find((c) => c.fault === 'ulp@5')!.result).toBe('pass');
    expect(r.failed).toBe(0);
    expect(r.trace).toBeNull();
  });

  it('refuses unknown faults and layers out of range with one message', () => {
    expect(() => resolveSelftestOptions({ faults: 'wo_layout,bogus' }, {})).toThrow(/--faults: unknown fault 'bogus' \(allowed: all, token/);
    expect(() => resolveSelftestOptions({ 'fault-layers': 'all' }, {})).toThrow(/--fault-layers: 'all' is not allowed here/);
    const o = resolveSelftestOptions({ backend: 'cpu', faults: 'ulp', 'fault-layers': '40' }, {});
    expect(() => runSelftest(o)).toThrow(/--fault-layers: layer 40 is out of range for synthetic:tiny \(allowed: 0-31\)/);
  });

  it('keeps no temporary trace when every case passes', () => {
    // A temporary directory of its own, so selftests that other test files run meanwhile do not count.
    const home = mkdtempSync(join(tmpdir(), 'greta-test-tmp-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = home;
    try {
      const r = runSelftest(resolveSelftestOptions({ backend: 'cpu', faults: 'token' }, {}));
      expect(r.failed).toBe(0);
      expect(r.trace).toBeNull();
      expect(readdirSync(home)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      rmSync(home, { recursive: true, force: true });
    }
  });
});
