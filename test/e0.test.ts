import { describe, expect, it } from 'vitest';
import { analyzeRuns } from '../src/analyze/analyze.js';
import { loadTraceFile } from '../src/analyze/load.js';
import { traceWith } from './helpers.js';

describe('E0 natural decode', () => {
  it('decode0 runs prefill top-1 at position N, and the analyzer reports the divergence at layer 0 x_in', () => {
    const run = traceWith({ prompt: 'p5_ba', exp: 'E0', steps: '3', layers: '0,1,2,15,31' });
    const [trace] = loadTraceFile(run.out);
    const n = trace!.header.prompts[0]!.n_tokens;
    const result = run.results[0]!;
    const preLogits = trace!.stages.find((s) => s.phase === 'prefill_last' && s.point === 'logits')!;
    expect(preLogits.topk!.ids[0]).toBe(result.prefill_last_top1);

    const dec = trace!.stages.filter((s) => s.phase === 'decode0');
    expect(dec.length).toBeGreaterThan(0);
    for (const s of dec) {
      expect(s.pos_id).toBe(n);
      expect(s.seq_len).toBe(n + 1);
      expect(s.token_id).toBe(result.prefill_last_top1);
    }
    // Steps continue from decode0: decode1 feeds decode0's top-1 at N+1.
    expect(result.decode_top1).toHaveLength(3);
    expect(trace!.end?.status).toBe('ok');
    expect(result.generated_text.length).toBeGreaterThan(0);

    const [row] = analyzeRuns([trace!]);
    expect(row!.exp).toBe('E0');
    expect(row!.first_mismatch_stage).toBe('x_in');
    expect(row!.first_mismatch_layer).toBe(0);
    expect(row!.prefill_last_top1).toBe(result.prefill_last_top1);
    expect(row!.decode0_top1).toBe(result.decode_top1[0]);
  });
});
