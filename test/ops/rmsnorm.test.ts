// rmsnorm: out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w
import { describe, expect, it } from 'vitest';

import {
  KINDS,
  WEIGHT_DTYPES,
  backend,
  bitsEqual,
  downloadAct,
  downloadRaw,
  expectError,
  expectRelL2,
  uploadAct,
  uploadWeight,
} from './helpers.js';
import { Rng } from './random.js';
import { refRmsnorm } from './reference.js';

// Relative L2 bounds against the FP64 reference (u = 2^-24 on cpu).
// cpu: the sum of squares has no cancellation (all terms >= 0): its relative
// error is at most (ceil(D/8) + 3) u = 36u for D = 257 (8 lanes, then a
// 3-level tree), halved by the square root; /D, +eps, sqrt, 1/x and the two
// products x * inv * w add ~5u. The all-same-sign worst case is ~23u = 1.4e-6,
// but the ~36 roundings are independent, so ~sqrt(36)/2 u + 5u ~ 8u = 5e-7
// is the realistic ceiling. Bound 1e-6; observed <= 1.2e-7.
// cpu-fp64: the same in f64 (u = 2^-53); observed <= 3.5e-16, bound 1e-14.
const BOUND = { cpu: 1e-6, 'cpu-fp64': 1e-14 } as const;

const D_VALUES = [1, 7, 8, 9, 63, 130, 257];
const M_VALUES = [1, 5];

describe.each(KINDS)('rmsnorm on %s', (kind) => {
  const b = backend(kind);

  for (const wd of WEIGHT_DTYPES) {
    for (const D of D_VALUES) {
      for (const M of M_VALUES) {
        it(`matches the FP64 reference: w ${wd}, M=${M} D=${D}`, () => {
          const rng = new Rng(3000 * D + 10 * M + WEIGHT_DTYPES.indexOf(wd));
          const x = uploadAct(b, [M, D], rng.normals(M * D, 3));
          const w = uploadWeight(b, wd, [D], rng.uniforms(D, 0.5, 1.5));
          const out = b.alloc(b.actDtype, [M, D]);
          b.rmsnorm(out, x.t, w.t, 1e-5);
          expectRelL2(downloadAct(b, out), refRmsnorm(x.values, M, D, w.values, 1e-5), BOUND[kind], `rmsnorm ${kind} ${wd} M=${M} D=${D}`);
        });
      }
    }
  }

  it('eps matters for small inputs (mean square comparable to eps)', () => {
    const rng = new Rng(42);
    const M = 3;
    const D = 130;
    const x = uploadAct(b, [M, D], rng.normals(M * D, 3e-3));
    const w = uploadWeight(b, 'bf16', [D], rng.uniforms(D, -2, 2));
    const out = b.alloc(b.actDtype, [M, D]);
    b.rmsnorm(out, x.t, w.t, 1e-5);
    const got = downloadAct(b, out);
    expectRelL2(got, refRmsnorm(x.values, M, D, w.values, 1e-5), BOUND[kind], `rmsnorm ${kind} small`);
    // Without eps the result would differ by ~(1 + eps / 9e-6)^(1/2): far outside the bound.
    const noEps = refRmsnorm(x.values, M, D, w.values, 1e-30);
    expect(Math.abs(got[0]! - noEps[0]!)).toBeGreaterThan(0.1 * Math.abs(noEps[0]!));
  });

  it('a row of zeros gives zeros', () => {
    const x = uploadAct(b, [2, 9], new Float64Array(18));
    const w = uploadWeight(b, 'f32', [9], new Float64Array(9).fill(1));
    const out = b.alloc(b.actDtype, [2, 9]);
    b.rmsnorm(out, x.t, w.t, 1e-6);
    expect(Array.from(downloadAct(b, out))).toEqual(new Array(18).fill(0));
  });

  describe('batch invariance', () => {
    for (const [M, D, wd] of [
      [6, 9, 'f32'],
      [7, 130, 'bf16'],
      [11, 257, 'f16'],
    ] as const) {
      it(`row r of M=${M} equals the row alone (D=${D} w ${wd})`, () => {
        const rng = new Rng(M * 31 + D);
        const xs = rng.normals(M * D);
        const x = uploadAct(b, [M, D], xs);
        const w = uploadWeight(b, wd, [D], rng.uniforms(D, 0.5, 1.5));
        const out = b.alloc(b.actDtype, [M, D]);
        b.rmsnorm(out, x.t, w.t, 1e-5);
        const all = downloadRaw(b, out);
        for (let r = 0; r < M; r++) {
          const xr = uploadAct(b, [1, D], xs.subarray(r * D, (r + 1) * D));
          const o1 = b.alloc(b.actDtype, [1, D]);
          b.rmsnorm(o1, xr.t, w.t, 1e-5);
          expect(bitsEqual(downloadRaw(b, o1), all.subarray(r * D, (r + 1) * D))).toBe(true);
          const o2 = b.alloc(b.actDtype, [1, D]);
          b.rmsnorm(o2, x.t.rows(r, 1), w.t, 1e-5);
          expect(bitsEqual(downloadRaw(b, o2), all.subarray(r * D, (r + 1) * D))).toBe(true);
        }
      });
    }
  });

  // The residual add fused with the norm after it: the bits of add, then rmsnorm.
  describe('addRmsnorm', () => {
    for (const [M, D, wd] of [
      [1, 9, 'f32'],
      [5, 130, 'bf16'],
      [3, 257, 'f16'],
    ] as const) {
      it(`equals add then rmsnorm bit for bit (M=${M} D=${D} w ${wd})`, () => {
        const rng = new Rng(M * 131 + D);
        const x = uploadAct(b, [M, D], rng.normals(M * D));
        const y = uploadAct(b, [M, D], rng.normals(M * D));
        const w = uploadWeight(b, wd, [D], rng.uniforms(D, 0.5, 1.5));
        const sum = b.alloc(b.actDtype, [M, D]);
        const out = b.alloc(b.actDtype, [M, D]);
        b.addRmsnorm(sum, out, x.t, y.t, w.t, 1e-5);
        const sum2 = b.alloc(b.actDtype, [M, D]);
        const out2 = b.alloc(b.actDtype, [M, D]);
        b.add(sum2, x.t, y.t);
        b.rmsnorm(out2, sum2, w.t, 1e-5);
        expect(bitsEqual(downloadRaw(b, sum), downloadRaw(b, sum2))).toBe(true);
        expect(bitsEqual(downloadRaw(b, out), downloadRaw(b, out2))).toBe(true);
      });
    }

    it('rejects an output that is an input, and shapes that differ', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const y = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('f32', [8]);
      const out = b.alloc(b.actDtype, [2, 8]);
      expectError(() => b.addRmsnorm(x, out, x, y, w, 1e-5), 'EINVAL', /addRmsnorm: sum and out must be tensors of their own/);
      expectError(() => b.addRmsnorm(out, out, x, y, w, 1e-5), 'EINVAL', /addRmsnorm: sum and out must be tensors of their own/);
      const z = b.alloc(b.actDtype, [3, 8]);
      expectError(() => b.addRmsnorm(z, out, x, y, w, 1e-5), 'EINVAL', /addRmsnorm: sum .* and a .* differ in shape/);
    });
  });

  describe('errors', () => {
    it('rejects a weight of the wrong length', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('f32', [7]);
      const out = b.alloc(b.actDtype, [2, 8]);
      expectError(() => b.rmsnorm(out, x, w, 1e-5), 'EINVAL', /rmsnorm: w f32\[7\] must have 8 elements/);
    });

    it('rejects eps <= 0', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('f32', [8]);
      const out = b.alloc(b.actDtype, [2, 8]);
      expectError(() => b.rmsnorm(out, x, w, 0), 'EINVAL', /rmsnorm: eps must be > 0/);
    });

    it('rejects out and x of different shapes', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('f32', [8]);
      const out = b.alloc(b.actDtype, [3, 8]);
      expectError(() => b.rmsnorm(out, x, w, 1e-5), 'EINVAL', /rmsnorm: out .* and x .* differ in shape/);
    });
  });
});
