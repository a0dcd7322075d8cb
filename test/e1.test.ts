// The mission: in E1 a batch-invariant engine gives identical prefill_last and
// decode0 at every layer and point.
import { describe, expect, it } from 'vitest';
import { analyzeRuns } from '../src/analyze/analyze.js';
import { loadTraceFile } from '../src/analyze/load.js';
import { readRow } from '../src/analyze/load.js';
import { POINTS, STAGE_POINTS } from '../src/trace/points.js';
import { traceWith } from './helpers.js';

describe('E1 on synthetic:tiny', () => {
  for (const prompt of ['p0_short', 'p4_sys', 'p6_long']) {
    it(`${prompt}: wo_out MAE < 1e-9 at every layer, and equal hashes at every traced point`, () => {
      const run = traceWith({ prompt, exp: 'E1' });
      const runs = loadTraceFile(run.out);
      expect(runs).toHaveLength(1);
      const [row] = analyzeRuns(runs);
      expect(row).toBeDefined();
      const nLayers = 32;
      // Every point of every layer, plus the final points, in both phases.
      expect(row!.comparisons).toHaveLength(nLayers * 7 + 3);
      expect(new Set(row!.comparisons.map((c) => c.point))).toEqual(new Set(STAGE_POINTS));
      expect(row!.unpaired).toEqual([]);
      const wo = row!.comparisons.filter((c) => c.point === 'wo_out');
      expect(wo).toHaveLength(nLayers);
      for (const c of wo) expect(c.mae).toBeLessThan(1e-9);
      for (const c of row!.comparisons) {
        expect(c.prefill_last.hash, `${c.layer} ${c.point}`).toBe(c.decode0.hash);
        expect(c.max_abs).toBe(0);
      }
      expect(row!.first_mismatch_stage).toBe('NONE');
      expect(row!.decode0_top1).toBe(row!.prefill_last_top1);

      // E1 replays token N-1 at position N-1 in both phases.
      const stages = runs[0]!.stages;
      const n = runs[0]!.header.prompts[0]!.n_tokens;
      const pre = stages.find((s) => s.phase === 'prefill_last' && s.layer === 0 && s.point === 'x_in')!;
      const dec = stages.find((s) => s.phase === 'decode0' && s.layer === 0 && s.point === 'x_in')!;
      expect(pre).toMatchObject({ token_index: n - 1, pos_id: n - 1, seq_len: n });
      expect(dec).toMatchObject({ token_index: 0, pos_id: n - 1, seq_len: n, token_id: pre.token_id });
    });
  }

  for (const backend of ['cpu', 'cpu-fp64']) {
    it(`sub-stages (attention pipe per head, MLP gate/up/act) are bit-identical too on ${backend}, and the probe's pv is attn_out`, () => {
      for (const prompt of backend === 'cpu' ? ['p0_short', 'p4_sys', 'p6_long'] : ['p4_sys']) {
        const run = traceWith({ prompt, backend, points: POINTS.join(','), layers: backend === 'cpu' ? 'all' : '0,17,31' });
        const runs = loadTraceFile(run.out);
        const [row] = analyzeRuns(runs);
        const layers = backend === 'cpu' ? 32 : 3;
        // 16 layer points, 3 of them once per head (4 heads), plus 3 final points.
        expect(row!.comparisons).toHaveLength(layers * (13 + 3 * 4) + 3);
        expect(row!.first_mismatch_stage, prompt).toBe('NONE');
        for (const c of row!.comparisons) expect(c.prefill_last.hash, `${prompt} ${c.layer} ${c.point} ${c.head}`).toBe(c.decode0.hash);
        // Each phase's probe pv, heads in order, is the fused attention's attn_out row bit for bit.
        const stages = runs[0]!.stages;
        for (const phase of ['prefill_last', 'decode0']) {
          for (const layer of [0, 31]) {
            const pick = (point: string) => stages.filter((s) => s.phase === phase && s.layer === layer && s.point === point);
            const att = readRow(runs[0]!, pick('attn_out')[0]!);
            const pv = pick('pv').sort((a, b) => a.head! - b.head!).flatMap((s) => [...readRow(runs[0]!, s)]);
            expect(pv).toEqual([...att]);
          }
        }
      }
    }, 120_000);
  }

  it('is bit-identical on the fp64 oracle backend too', () => {
    const run = traceWith({ prompt: 'p0_short', exp: 'E1', backend: 'cpu-fp64', layers: '0,31' });
    const [row] = analyzeRuns(loadTraceFile(run.out));
    expect(row!.first_mismatch_stage).toBe('NONE');
    expect(row!.comparisons.every((c) => c.prefill_last.hash === c.decode0.hash)).toBe(true);
    expect(loadTraceFile(run.out)[0]!.stages[0]!.dtype).toBe('f64');
  });
});
