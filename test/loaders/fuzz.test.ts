import { describe, expect, it } from 'vitest';
import { fuzz } from '../../src/loaders/fuzz.js';

describe('loader fuzzer', () => {
  it('3000 seeded mutants of safetensors and GGUF v2/v3 files: each parses or is one LoaderError', () => {
    const res = fuzz({ iterations: 3000, seed: 20260117 });
    if (res.failures.length) console.error(res.failures.slice(0, 5));
    expect(res.failures).toEqual([]);
    expect(res.ok + res.rejected).toBe(3000);
    expect(res.ok).toBeGreaterThan(50);
    expect(res.rejected).toBeGreaterThan(1500);
    // The mutations reach past the fixed header into the deeper checks of both formats.
    const reasons = Object.keys(res.reasons).join('\n');
    for (const r of [/n_tensors|tensor infos cannot fit/, /runs past the end of the file/, /overlap|extends past the end of the file/, /data_offsets/, /not a GGUF value type/]) {
      expect(reasons).toMatch(r);
    }
  }, 30_000);

  it('is deterministic: the same seed gives the same outcomes, and one iteration replays alone', () => {
    const a = fuzz({ iterations: 200, seed: 5 });
    const b = fuzz({ iterations: 200, seed: 5 });
    expect({ ok: a.ok, rejected: a.rejected, reasons: a.reasons }).toEqual({ ok: b.ok, rejected: b.rejected, reasons: b.reasons });
    const whole = fuzz({ iterations: 40, seed: 9, start: 100 });
    let ok = 0;
    for (let i = 100; i < 140; i++) ok += fuzz({ iterations: 1, seed: 9, start: i }).ok;
    expect(ok).toBe(whole.ok);
  });
});
