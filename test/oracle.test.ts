// The third opinion: the same phases on cpu-fp64 with the same weights, and
// which side departed from it at the first mismatch.
import { describe, expect, it } from 'vitest';
import { analyzeRuns } from '../src/analyze/analyze.js';
import { loadTraceFile } from '../src/analyze/load.js';
import { formatOracle, oracleVerdicts } from '../src/analyze/oracle.js';
import { traceWith } from './helpers.js';

function verdict(flags: Record<string, string | boolean>) {
  const t = traceWith({ prompt: 'p4_sys', oracle: 'cpu-fp64', ...flags });
  const runs = loadTraceFile(t.out);
  const rows = analyzeRuns(runs);
  return { runs, rows, v: oracleVerdicts(runs, rows) };
}

describe('--oracle cpu-fp64', () => {
  it('traces a linked fp64 run without the fault; a clean run is within fp32 rounding of it everywhere', () => {
    const { runs, rows, v } = verdict({});
    expect(runs).toHaveLength(2);
    const [main, oracle] = runs;
    expect(oracle!.header).toMatchObject({ backend: 'cpu-fp64', options: { oracle_for: main!.header.run_id } });
    expect(oracle!.stages[0]!.dtype).toBe('f64');
    expect(rows).toHaveLength(1); // the oracle run is a reference, not a row
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ at: null, departed: null, oracle_backend: 'cpu-fp64' });
    expect(v[0]!.pairs).toHaveLength(rows[0]!.comparisons.length);
    // Measured 1.1e-6 at worst (layer 25 mlp_out) on synthetic:tiny.
    expect(v[0]!.worst.prefill_last!.rel_l2).toBeLessThan(1e-5);
    expect(v[0]!.worst.decode0!.rel_l2).toBeLessThan(1e-5);
  });

  it('a wrong WO layout in decode: decode0 departed, prefill_last stays at fp32 rounding', () => {
    const { v } = verdict({ fault: 'wo_layout@15' });
    expect(v[0]).toMatchObject({ at: { layer: 15, point: 'wo_out' }, departed: 'decode0' });
    expect(v[0]!.prefill_last_rel_l2!).toBeLessThan(1e-5);
    expect(v[0]!.decode0_rel_l2!).toBeGreaterThan(0.1);
    expect(formatOracle(v)).toMatch(/at layer 15 wo_out prefill_last is [\d.e+-]+ from fp64 and decode0 [\d.e+-]+: decode0 departed/);
  });

  it('fp16 accumulation is caught exactly, and the oracle says by how much', () => {
    const { rows, v } = verdict({ fault: 'matmul_fp16@3' });
    expect(rows[0]).toMatchObject({ first_mismatch_stage: 'mlp_out', first_mismatch_layer: 3 });
    expect(v[0]!.departed).toBe('decode0');
    // fp16 keeps 11 bits: ~1e-3 relative, 1000x fp32's distance to fp64.
    expect(v[0]!.decode0_rel_l2!).toBeGreaterThan(1e-4);
    expect(v[0]!.decode0_rel_l2!).toBeLessThan(1e-1);
    expect(v[0]!.decode0_rel_l2! / v[0]!.prefill_last_rel_l2!).toBeGreaterThan(100);
  });

  it('a one-ulp difference: found by the bits, neither side departed from fp64', () => {
    const { rows, v } = verdict({ fault: 'ulp@20', layers: '19,20,21', points: 'x_in,x_out' });
    expect(rows[0]).toMatchObject({ first_mismatch_stage: 'x_out', first_mismatch_layer: 20 });
    expect(v[0]!.departed).toBe('neither');
    expect(formatOracle(v)).toContain('neither side departed beyond fp32 rounding of fp64');
  });

  it('--oracle-tol moves the bound', () => {
    const t = traceWith({ prompt: 'p4_sys', oracle: 'cpu-fp64', fault: 'matmul_fp16@3', layers: '3', points: 'mlp_out' });
    const runs = loadTraceFile(t.out);
    const rows = analyzeRuns(runs);
    expect(oracleVerdicts(runs, rows, 1)[0]!.departed).toBe('neither');
    expect(oracleVerdicts(runs, rows, 1e-4)[0]!.departed).toBe('decode0');
  });
});
