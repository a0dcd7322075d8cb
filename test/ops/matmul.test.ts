// matmul: out[m, n] = sum_k x[m, k] * w[n, k], weights f32/f16/bf16.
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
import { refMatmul, roundToF16 } from './reference.js';

// Relative L2 bounds against the FP64 reference (inputs are the exact stored
// values, so only the backend's own rounding counts).
// cpu: each output is a K-term dot product accumulated in f32 over 8 lanes of
// ceil(K/8) terms, then a 3-level tree: ~K/8 + 3 roundings of 2^-24 that add
// up like a random walk, so for K <= 257 the relative L2 is ~1e-7 and stays
// well under 1e-6 (the worst case, (K/8 + 3) * 2^-24 ~ 2e-6 per element with
// no cancellation, is not reached by random signed data).
// Observed: <= 1.6e-7.
// cpu-fp64: the same sum in f64 (2^-53 ~ 1.1e-16); the reference's own plain
// left-to-right sum has error of the same size. Observed <= 7e-16, bound 1e-14.
const BOUND = { cpu: 1e-6, 'cpu-fp64': 1e-14 } as const;

const K_VALUES = [1, 7, 8, 9, 63, 130, 257];
const M_VALUES = [1, 5];
const N = 11;

describe.each(KINDS)('matmul on %s', (kind) => {
  const b = backend(kind);

  for (const wd of WEIGHT_DTYPES) {
    for (const K of K_VALUES) {
      for (const M of M_VALUES) {
        it(`matches the FP64 reference: w ${wd}, M=${M} K=${K} N=${N}`, () => {
          const rng = new Rng(1000 * K + 10 * M + WEIGHT_DTYPES.indexOf(wd));
          const x = uploadAct(b, [M, K], rng.normals(M * K));
          const w = uploadWeight(b, wd, [N, K], rng.uniforms(N * K, -1, 1));
          const out = b.alloc(b.actDtype, [M, N]);
          b.matmul(out, x.t, w.t);
          const got = downloadAct(b, out);
          const ref = refMatmul(x.values, M, K, w.values, N);
          expectRelL2(got, ref, BOUND[kind], `matmul ${kind} ${wd} M=${M} K=${K}`);
        });
      }
    }
  }

  it('K = 1 is a single correctly rounded product', () => {
    const rng = new Rng(7);
    const x = uploadAct(b, [3, 1], rng.normals(3));
    const w = uploadWeight(b, 'f32', [4, 1], rng.normals(4));
    const out = b.alloc(b.actDtype, [3, 4]);
    b.matmul(out, x.t, w.t);
    const got = downloadAct(b, out);
    const round = kind === 'cpu' ? Math.fround : (v: number) => v;
    for (let m = 0; m < 3; m++)
      for (let n = 0; n < 4; n++) expect(got[m * 4 + n]).toBe(round(x.values[m]! * w.values[n]!));
  });

  // Batch invariance: row r of a call with M rows is bit-identical to the same
  // row computed alone. The large case (N * M * K > 2^18) also splits the
  // M-row call over threads while the single-row call runs on one.
  describe('batch invariance', () => {
    const cases: [number, number, number, 'f32' | 'f16' | 'bf16'][] = [
      [6, 9, 13, 'f32'],
      [7, 130, 33, 'bf16'],
      [5, 257, 512, 'f16'],
      [9, 257, 300, 'f32'],
    ];
    for (const [M, K, N, wd] of cases) {
      it(`row r of M=${M} equals the row alone (K=${K} N=${N} w ${wd})`, () => {
        const rng = new Rng(M * 7919 + K);
        const xs = rng.normals(M * K);
        const x = uploadAct(b, [M, K], xs);
        const w = uploadWeight(b, wd, [N, K], rng.uniforms(N * K, -1, 1));
        const out = b.alloc(b.actDtype, [M, N]);
        b.matmul(out, x.t, w.t);
        const all = downloadRaw(b, out);
        for (let r = 0; r < M; r++) {
          // The row alone, in a fresh tensor ...
          const xr = uploadAct(b, [1, K], xs.subarray(r * K, (r + 1) * K));
          const o1 = b.alloc(b.actDtype, [1, N]);
          b.matmul(o1, xr.t, w.t);
          expect(bitsEqual(downloadRaw(b, o1), all.subarray(r * N, (r + 1) * N))).toBe(true);
          // ... and as a one-row view of the batch.
          const o2 = b.alloc(b.actDtype, [1, N]);
          b.matmul(o2, x.t.rows(r, 1), w.t);
          expect(bitsEqual(downloadRaw(b, o2), all.subarray(r * N, (r + 1) * N))).toBe(true);
        }
      });
    }
  });

  // A fused projection: Q, K and V rows stacked in one weight, one call with
  // three outputs; each output equals its own matmul bit for bit.
  describe('split outputs', () => {
    for (const [M, K, widths, wd] of [
      [1, 64, [24, 8, 8], 'bf16'],
      [5, 130, [16, 16], 'f16'],
      [9, 257, [33, 5, 7], 'f32'],
    ] as const) {
      it(`M=${M} K=${K} outputs ${widths.join('+')} (w ${wd}) equal the unfused matmuls`, () => {
        const rng = new Rng(31 * M + K);
        const N = widths.reduce((a, c) => a + c, 0);
        const x = uploadAct(b, [M, K], rng.normals(M * K));
        const w = uploadWeight(b, wd, [N, K], rng.uniforms(N * K, -1, 1));
        const outs = widths.map((c) => b.alloc(b.actDtype, [M, c]));
        b.matmul(outs, x.t, w.t);
        let row = 0;
        widths.forEach((c, i) => {
          const alone = b.alloc(b.actDtype, [M, c]);
          b.matmul(alone, x.t, w.t.rows(row, c));
          expect(bitsEqual(downloadRaw(b, outs[i]!), downloadRaw(b, alone))).toBe(true);
          row += c;
        });
      });
    }

    it('rejects widths that do not add up to the weight rows, and more than 3 outputs', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('f32', [6, 8]);
      const o = (c: number) => b.alloc(b.actDtype, [2, c]);
      expectError(() => b.matmul([o(2), o(3)], x, w), 'EINVAL', /matmul: outputs 2\+3 wide do not add up to w f32\[6,8\]'s 6 rows/);
      expectError(() => b.matmul([o(1), o(1), o(2), o(2)], x, w), 'EINVAL', /matmul: got 4 outputs \(allowed: 1 to 3\)/);
      expectError(() => b.matmul([], x, w), 'EINVAL', /matmul: got 0 outputs/);
      expectError(() => b.matmul([o(3), b.alloc(b.actDtype, [1, 3])], x, w), 'EINVAL', /matmul: out .* must have 2 rows/);
    });
  });

  describe('errors', () => {
    it('rejects a K mismatch between x and w', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('f32', [4, 9]);
      const out = b.alloc(b.actDtype, [2, 4]);
      expectError(() => b.matmul(out, x, w), 'EINVAL', /matmul: .*differ in K/);
    });

    it('rejects an output of the wrong shape', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('bf16', [4, 8]);
      const out = b.alloc(b.actDtype, [2, 5]);
      expectError(() => b.matmul(out, x, w), 'EINVAL', /matmul: out .* must be \[2,4\]/);
    });

    it('rejects activations not in the backend dtype', () => {
      const other = kind === 'cpu' ? 'f64' : 'f32';
      const x = b.alloc(other, [2, 8]);
      const w = b.alloc('f32', [4, 8]);
      const out = b.alloc(b.actDtype, [2, 4]);
      expectError(() => b.matmul(out, x, w), 'EINVAL', new RegExp(`matmul: x must be ${b.actDtype}`));
    });

    it('rejects an i32 weight', () => {
      const x = b.alloc(b.actDtype, [2, 8]);
      const w = b.alloc('i32', [4, 8]);
      const out = b.alloc(b.actDtype, [2, 4]);
      expectError(() => b.matmul(out, x, w), 'EINVAL', /matmul: w must be f32, f16 or bf16/);
    });
  });
});

// matmulVariant: the precision faults' accumulations, defined step by step
// (p = x*w, s = acc + p, each rounded to the activation dtype; f16_accumulate
// then rounds acc to half), so an exact emulation here must match every bit.
describe.each(KINDS)('matmulVariant on %s', (kind) => {
  const b = backend(kind);
  const act = kind === 'cpu' ? Math.fround : (v: number) => v;

  for (const variant of ['reverse_k', 'f16_accumulate'] as const) {
    for (const wd of WEIGHT_DTYPES) {
      it(`${variant}, w ${wd}: every bit as the step-by-step definition`, () => {
        const [M, K, N] = [3, 37, 5];
        const rng = new Rng(31 + WEIGHT_DTYPES.indexOf(wd));
        const x = uploadAct(b, [M, K], rng.normals(M * K));
        const w = uploadWeight(b, wd, [N, K], rng.uniforms(N * K, -1, 1));
        const out = b.alloc(b.actDtype, [M, N]);
        b.matmulVariant(out, x.t, w.t, variant);
        const got = downloadAct(b, out);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let acc = 0;
            for (let i = 0; i < K; i++) {
              const kk = variant === 'reverse_k' ? K - 1 - i : i;
              const s = act(acc + act(x.values[m * K + kk]! * w.values[n * K + kk]!));
              acc = variant === 'reverse_k' ? s : roundToF16(Math.fround(s));
            }
            expect(got[m * N + n], `out[${m},${n}]`).toBe(acc);
          }
        }
      });
    }
  }

  it('refuses an unknown variant', () => {
    const x = b.alloc(b.actDtype, [1, 4]);
    const w = b.alloc('f32', [2, 4]);
    const out = b.alloc(b.actDtype, [1, 2]);
    expectError(() => b.matmulVariant(out, x, w, 'tf32' as 'reverse_k'), 'EINVAL', /matmulVariant: variant 'tf32' is unknown/);
  });
});
