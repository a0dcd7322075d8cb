// summarize: stats (over the finite values), NaN/inf counts, a 64-bit hash of
// the row's exact bits, and the values at the given sample indices.
import { describe, expect, it } from 'vitest';

import { readSpanStats, SPAN_STATS } from '../../src/native.js';
import { KINDS, backend, downloadRaw, expectError, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refSummarize } from './reference.js';

// Bounds. The stats are accumulated in double on both backends (the values
// themselves are exact), so only the summation order may differ from the
// reference: with n <= 257 terms the error is <= n * 2^-53 * sum|x|.
// mean and abs_mean: |got - ref| <= 1e-12 * abs_mean (n * 2^-53 ~ 3e-14, the
// mean of random-signed values cancels, so it is measured against abs_mean);
// rms: relative 1e-12 (no cancellation). min, max, nan, inf, hash and sample
// are exact.
const TOL = 1e-12;

function checkRow(
  b: ReturnType<typeof backend>,
  t: ReturnType<typeof uploadAct>['t'],
  row: number,
  cols: number,
  sample: number[],
): void {
  const raw = downloadRaw(b, t).subarray(row * cols, (row + 1) * cols);
  const got = b.summarize(t, row, sample);
  const ref = refSummarize(raw, sample);
  const scale = Math.max(ref.abs_mean, Number.MIN_VALUE);
  expect(Math.abs(got.mean - ref.mean)).toBeLessThanOrEqual(TOL * scale);
  expect(Math.abs(got.abs_mean - ref.abs_mean)).toBeLessThanOrEqual(TOL * scale);
  expect(Math.abs(got.rms - ref.rms)).toBeLessThanOrEqual(TOL * Math.max(ref.rms, Number.MIN_VALUE));
  // == so that +0 and -0 compare equal (a min of {0, -0} may be either).
  expect(got.min === ref.min).toBe(true);
  expect(got.max === ref.max).toBe(true);
  expect(got.nan).toBe(ref.nan);
  expect(got.inf).toBe(ref.inf);
  expect(got.hash).toMatch(/^[0-9a-f]{16}$/);
  expect(got.hash).toBe(ref.hash);
  expect(got.sample).toBeInstanceOf(Float64Array);
  expect(Array.from(got.sample)).toEqual(ref.sample);
}

describe.each(KINDS)('summarize on %s', (kind) => {
  const b = backend(kind);

  for (const cols of [1, 7, 8, 9, 130, 257]) {
    it(`matches the reference on random rows: cols=${cols}`, () => {
      const rng = new Rng(cols);
      const M = 3;
      const x = uploadAct(b, [M, cols], rng.normals(M * cols, 2));
      const sample = [0, cols - 1, rng.int(cols), rng.int(cols), 0];
      for (let r = 0; r < M; r++) checkRow(b, x.t, r, cols, sample);
    });
  }

  it('counts NaN and infinities and computes the stats over finite values only', () => {
    const row = [1, NaN, -3, Infinity, 0.5, -Infinity, NaN, 2, -0];
    const x = uploadAct(b, [2, row.length], [...row, ...row.map((v) => -v)]);
    checkRow(b, x.t, 0, row.length, [1, 3, 4, 8]);
    checkRow(b, x.t, 1, row.length, [0, 5]);
    const s = b.summarize(x.t, 0, [1, 3, 8]);
    expect(s.nan).toBe(2);
    expect(s.inf).toBe(2);
    expect(s.min).toBe(-3);
    expect(s.max).toBe(2);
    expect(s.mean).toBeCloseTo(0.5 / 5, 15);
    expect(s.abs_mean).toBeCloseTo(6.5 / 5, 15);
    expect(s.rms).toBeCloseTo(Math.sqrt(14.25 / 5), 15);
    expect(Number.isNaN(s.sample[0]!)).toBe(true);
    expect(s.sample[1]).toBe(Infinity);
    expect(Object.is(s.sample[2], -0)).toBe(true);
  });

  it('summarizeSpans gives each span the stats and hash summarize gives it as a row', () => {
    const rng = new Rng(77);
    const widths = [5, 130, 1, 64];
    const total = widths.reduce((a, w) => a + w, 0) + 3;
    const flat = rng.normals(total, 2);
    flat[7] = NaN;
    const buf = uploadAct(b, [total, 1], flat);
    const spans: number[] = [];
    let at = 3;
    for (const w of widths) {
      spans.push(at, w);
      at += w;
    }
    const out = b.alloc('f64', [widths.length, SPAN_STATS]);
    b.summarizeSpans(out, buf.t, Int32Array.from(spans));
    const host = new ArrayBuffer(widths.length * SPAN_STATS * 8 + 16);
    b.copyToHost(out, host, 16);
    b.fence().wait();
    widths.forEach((w, i) => {
      const row = uploadAct(b, [1, w], flat.subarray(spans[2 * i]!, spans[2 * i]! + w));
      const want = b.summarize(row.t, 0, []);
      expect({ ...readSpanStats(host, 16, i), sample: [] }).toEqual({ ...want, sample: [] });
    });
    expect(readSpanStats(host, 16, 0).nan).toBe(1);
    expectError(() => b.summarizeSpans(out, buf.t, Int32Array.of(0, 5, 1)), 'EINVAL', /^summarizeSpans: spans must be \(offset, width\) pairs, got 3 values$/);
    expectError(() => b.summarizeSpans(out, buf.t, Int32Array.of(0, 5)), 'EINVAL', /^summarizeSpans: out must be f64\[1,8\], got f64\[4,8\]$/);
    expectError(() => b.summarizeSpans(out.rows(0, 2), buf.t, Int32Array.of(0, 5, total - 2, 3)), 'EINVAL', /^summarizeSpans: span 1 \[\d+, \d+\) is not a nonempty range inside x/);
    expectError(() => b.summarizeSpans(out.rows(0, 1), buf.t, Int32Array.of(4, 0)), 'EINVAL', /^summarizeSpans: span 0 \[4, 4\) is not a nonempty range/);
    expectError(() => b.copyToHost(out, new ArrayBuffer(100)), 'EINVAL', /^copyToHost: f64\[4,8\] \(256 bytes\) at byteOffset 0 does not fit the 100 bytes of dst$/);
  });

  it('a row with no finite values has zero stats', () => {
    const x = uploadAct(b, [1, 3], [NaN, Infinity, NaN]);
    const s = b.summarize(x.t, 0, []);
    expect([s.mean, s.abs_mean, s.rms, s.min, s.max, s.nan, s.inf]).toEqual([0, 0, 0, 0, 0, 2, 1]);
    expect(s.sample.length).toBe(0);
    checkRow(b, x.t, 0, 3, []);
  });

  describe('hash', () => {
    it('is equal for identical rows (same tensor, other tensor, row view)', () => {
      const rng = new Rng(5);
      const vals = rng.normals(130);
      const x = uploadAct(b, [3, 130], [...vals, ...rng.normals(130), ...vals]);
      const y = uploadAct(b, [1, 130], vals);
      const h = b.summarize(x.t, 0, []).hash;
      expect(b.summarize(x.t, 2, []).hash).toBe(h);
      expect(b.summarize(y.t, 0, []).hash).toBe(h);
      expect(b.summarize(x.t.rows(2, 1), 0, []).hash).toBe(h);
      expect(b.summarize(x.t, 1, []).hash).not.toBe(h);
    });

    it('changes when one element changes only in its bits (+0 vs -0, one ulp)', () => {
      const base = [1.5, 0, -2, 0.25, 7, 0, 3];
      const h0 = b.summarize(uploadAct(b, [1, 7], base).t, 0, []).hash;
      const negZero = [...base];
      negZero[5] = -0;
      const hz = b.summarize(uploadAct(b, [1, 7], negZero).t, 0, []).hash;
      expect(hz).not.toBe(h0);
      // Stats cannot tell them apart; the hash can.
      const s0 = b.summarize(uploadAct(b, [1, 7], base).t, 0, []);
      const sz = b.summarize(uploadAct(b, [1, 7], negZero).t, 0, []);
      expect([sz.mean, sz.abs_mean, sz.rms, sz.min, sz.max]).toEqual([s0.mean, s0.abs_mean, s0.rms, s0.min, s0.max]);
      const ulp = [...base];
      ulp[0] = 1.5 + (kind === 'cpu' ? 2 ** -23 : 2 ** -52);
      expect(b.summarize(uploadAct(b, [1, 7], ulp).t, 0, []).hash).not.toBe(h0);
    });

    it('depends on element positions (swapping two elements changes it)', () => {
      const h0 = b.summarize(uploadAct(b, [1, 4], [1, 2, 3, 4]).t, 0, []).hash;
      const h1 = b.summarize(uploadAct(b, [1, 4], [2, 1, 3, 4]).t, 0, []).hash;
      expect(h1).not.toBe(h0);
    });
  });

  describe('errors', () => {
    it('rejects a row outside the tensor', () => {
      const x = b.alloc(b.actDtype, [2, 5]);
      expectError(() => b.summarize(x, 2, []), 'EINVAL', /summarize: row 2 is outside \[0, 2\)/);
      expectError(() => b.summarize(x, -1, []), 'EINVAL', /summarize: row -1 is outside \[0, 2\)/);
    });

    it('rejects a sample index outside the row', () => {
      const x = b.alloc(b.actDtype, [2, 5]);
      expectError(() => b.summarize(x, 0, [0, 5]), 'EINVAL', /summarize: sample index 5 is outside \[0, 5\)/);
    });
  });
});
