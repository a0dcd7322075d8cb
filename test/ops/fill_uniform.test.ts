// fill_uniform: t[i] = offset + scale * u_i, u_i uniform in [-1, 1) with 24
// significant bits from a counter-based hash of (seed, i) (SplitMix64), the
// same values on every backend and in any launch shape.
import { describe, expect, it } from 'vitest';

import type { DType, Tensor } from '../../src/native.js';
import { KINDS, backend, bitsEqual, expectError } from './helpers.js';
import { numberToBf16Bits, numberToF16Bits, refFillUniform } from './reference.js';

// Bounds: exact. The reference recomputes the hash with BigInt arithmetic, so
// every stored value must equal the reference value v rounded to the tensor's
// dtype: v itself for f64, fround(v) for f32. f16/bf16 are stored as
// round(fround(v)) (through f32, as the C++ does, so that they too are the same
// on every backend); note that this differs from rounding v directly to f16 in
// ~5 of 65536 elements (double rounding), which is why the reference rounds
// through f32 as well.
// Statistics: mean within 4 standard errors (scale / sqrt(3 n)) of offset,
// variance within 3% of scale^2 / 3 for n = 65536 (standard error ~0.35%).

const PARAMS: [bigint, number, number][] = [
  [0n, 1, 0],
  [12345n, 0.1, 1],
  [0xfedcba9876543210n, Math.sqrt(3 / 4096), 0],
  [(1n << 64n) - 1n, 0.37, -0.2],
];

function fill(kind: (typeof KINDS)[number], dtype: DType, shape: number[], seed: bigint, scale: number, offset: number) {
  const b = backend(kind);
  const t: Tensor = b.alloc(dtype, shape);
  b.fillUniform(t, seed, scale, offset);
  return b.download(t);
}

describe.each(KINDS)('fill_uniform on %s', (kind) => {
  const b = backend(kind);

  for (const [seed, scale, offset] of PARAMS) {
    it(`f64 and f32 match the reference exactly: seed ${seed}, scale ${scale}, offset ${offset}`, () => {
      const n = 1031;
      const ref = refFillUniform(n, seed, scale, offset);
      const f64 = fill(kind, 'f64', [n], seed, scale, offset);
      expect(Array.from(f64)).toEqual(Array.from(ref));
      const f32 = fill(kind, 'f32', [n], seed, scale, offset);
      expect(Array.from(f32)).toEqual(Array.from(ref, Math.fround));
    });

    it(`f16 and bf16 hold the reference rounded through f32: seed ${seed}, scale ${scale}, offset ${offset}`, () => {
      const n = 1031;
      const ref = refFillUniform(n, seed, scale, offset);
      const f16 = fill(kind, 'f16', [n], seed, scale, offset);
      expect(Array.from(f16)).toEqual(Array.from(ref, (v) => numberToF16Bits(Math.fround(v))));
      const bf16 = fill(kind, 'bf16', [n], seed, scale, offset);
      expect(Array.from(bf16)).toEqual(Array.from(ref, (v) => numberToBf16Bits(Math.fround(v))));
    });
  }

  it('u is on a 24-bit grid in [-1, 1)', () => {
    const n = 65536;
    const u = fill(kind, 'f64', [n], 77n, 1, 0);
    let min = Infinity;
    let max = -Infinity;
    let offGrid = 0;
    for (let i = 0; i < n; i++) {
      const v = u[i]!;
      if (!Number.isInteger(v * 2 ** 23)) offGrid++;
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect(offGrid).toBe(0);
    expect(min).toBeGreaterThanOrEqual(-1);
    expect(max).toBeLessThan(1);
    // 65536 draws cover the interval: both ends within 1e-3.
    expect(min).toBeLessThan(-1 + 1e-3);
    expect(max).toBeGreaterThan(1 - 1e-3);
  });

  it('values lie in [offset - scale, offset + scale), mean near offset, variance near scale^2 / 3', () => {
    const n = 65536;
    const scale = 0.37;
    const offset = -0.2;
    const x = fill(kind, 'f64', [256, 256], 2024n, scale, offset);
    let sum = 0;
    let sq = 0;
    let outside = 0;
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      if (!(v >= offset - scale && v < offset + scale)) outside++;
      sum += v;
      sq += (v - offset) ** 2;
    }
    expect(outside).toBe(0);
    const mean = sum / n;
    expect(Math.abs(mean - offset)).toBeLessThan((4 * scale) / Math.sqrt(3 * n));
    expect(Math.abs(sq / n / (scale * scale / 3) - 1)).toBeLessThan(0.03);
    // f32 (rounded) values stay within the rounded interval.
    const lo = Math.fround(offset - scale);
    const hi = Math.fround(offset + scale);
    let outside32 = 0;
    for (const v of fill(kind, 'f32', [n], 2024n, scale, offset)) if (!(v >= lo && v <= hi)) outside32++;
    expect(outside32).toBe(0);
  });

  it('is deterministic for a seed; different seeds differ', () => {
    const a = fill(kind, 'f32', [4099], 1n, 1, 0) as Float32Array;
    const a2 = fill(kind, 'f32', [4099], 1n, 1, 0) as Float32Array;
    const c = fill(kind, 'f32', [4099], 2n, 1, 0) as Float32Array;
    expect(bitsEqual(a, a2)).toBe(true);
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === c[i]) same++;
    expect(same).toBeLessThan(5); // chance agreement of 24-bit values: ~4099 / 2^24
  });

  it('depends only on the flat index, not on the shape or the thread split', () => {
    // 65536 elements are filled by several threads; 1000 by one.
    const big = fill(kind, 'f32', [256, 256], 99n, 2, 0.5) as Float32Array;
    const small = fill(kind, 'f32', [1000], 99n, 2, 0.5) as Float32Array;
    const other = fill(kind, 'f32', [8, 125], 99n, 2, 0.5) as Float32Array;
    expect(bitsEqual(small, big.subarray(0, 1000))).toBe(true);
    expect(bitsEqual(other, small)).toBe(true);
  });

  it('fills a row view from index 0 of the view', () => {
    const t = b.alloc('f32', [4, 10]);
    b.upload(t, new Float32Array(40));
    b.fillUniform(t.rows(2, 1), 5n, 1, 0);
    const got = b.download(t) as Float32Array;
    const row = fill(kind, 'f32', [10], 5n, 1, 0) as Float32Array;
    expect(bitsEqual(got.subarray(20, 30), row)).toBe(true);
    expect(Array.from(got.subarray(0, 20))).toEqual(new Array(20).fill(0));
    expect(Array.from(got.subarray(30))).toEqual(new Array(10).fill(0));
  });

  describe('errors', () => {
    it('rejects a seed outside 64 bits', () => {
      const t = b.alloc('f32', [4]);
      expectError(() => b.fillUniform(t, -1n, 1, 0), 'EINVAL', /fillUniform: seed must fit in 64 bits/);
      expectError(() => b.fillUniform(t, 1n << 64n, 1, 0), 'EINVAL', /fillUniform: seed must fit in 64 bits/);
    });
  });
});

describe('fill_uniform across backends', () => {
  for (const dtype of ['f32', 'f64', 'f16', 'bf16'] as const) {
    it(`${dtype}: cpu and cpu-fp64 store identical bits`, () => {
      for (const [seed, scale, offset] of PARAMS) {
        const a = fill('cpu', dtype, [37, 29], seed, scale, offset);
        const c = fill('cpu-fp64', dtype, [37, 29], seed, scale, offset);
        expect(Array.from(new Uint8Array(a.buffer))).toEqual(Array.from(new Uint8Array(c.buffer)));
      }
    });
  }
});
