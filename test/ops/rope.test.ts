// rope: in place, rotate-half convention (HF Llama): in every head of row m
// the pair (x[i], x[i + head_dim/2]) rotates by pos[m] * inv_freq[i].
import { describe, expect, it } from 'vitest';

import { KINDS, UNIT_ROUNDOFF, backend, bitsEqual, downloadAct, downloadRaw, expectError, expectRelL2, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refRope } from './reference.js';

// Bound, derived per case. A rotation preserves each pair's norm, so the
// relative L2 is at most the worst relative error of one rotated pair:
//  - the angle pos * f is rounded once in the activation dtype: absolute
//    error <= pos * f * u (u = 2^-24 on cpu, 2^-53 on cpu-fp64), and an
//    angle error d moves the pair by |d| times its norm;
//  - cos and sin (<= 1 ulp each), two products and one sum per output: a few u.
// So bound = (maxPos * maxInvFreq + 8) * u: ~1.4e-6 on cpu for positions
// below 16, ~2.4e-4 for positions up to 4095 (fp32 angles are the limit
// there, not the kernel); on cpu-fp64 4.5e-13 at most.
function bound(kind: keyof typeof UNIT_ROUNDOFF, pos: Int32Array, invFreq: Float64Array): number {
  return (Math.max(...pos) * Math.max(...invFreq) + 8) * UNIT_ROUNDOFF[kind];
}

/** Llama inverse frequencies 1 / theta^(2i / head_dim), i < head_dim / 2. */
function invFreqs(headDim: number, theta = 10000): Float64Array {
  return Float64Array.from({ length: headDim / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / headDim));
}

const CASES: { nHeads: number; headDim: number }[] = [
  { nHeads: 1, headDim: 2 },
  { nHeads: 3, headDim: 16 },
  { nHeads: 4, headDim: 64 },
  { nHeads: 2, headDim: 128 },
];

describe.each(KINDS)('rope on %s', (kind) => {
  const b = backend(kind);

  for (const { nHeads, headDim } of CASES) {
    for (const M of [1, 7]) {
      for (const maxPos of [16, 4096]) {
        it(`matches the FP64 reference: ${nHeads} heads x ${headDim}, M=${M}, positions < ${maxPos}`, () => {
          const rng = new Rng(nHeads * 1000 + headDim * 10 + M + maxPos);
          const width = nHeads * headDim;
          const x = uploadAct(b, [M, width], rng.normals(M * width));
          const f = uploadAct(b, [headDim / 2], invFreqs(headDim));
          const pos = M === 1 ? Int32Array.of(maxPos - 1) : Int32Array.of(0, maxPos - 1, ...rng.ints(M - 2, maxPos));
          b.rope(x.t, pos, f.t, nHeads, headDim);
          const ref = refRope(x.values, M, pos, f.values, nHeads, headDim);
          expectRelL2(downloadAct(b, x.t), ref, bound(kind, pos, f.values), `rope ${kind} ${nHeads}x${headDim} M=${M} <${maxPos}`);
        });
      }
    }
  }

  it('pairs element i with element i + head_dim/2 (not adjacent elements)', () => {
    // head_dim 8, 2 heads; inv_freq = [a, 0, 0, 0]: only pair (0, 4) of each head rotates.
    const headDim = 8;
    const a = 0.75;
    const p = 2;
    const xs = Float64Array.from({ length: 16 }, (_, i) => i + 1);
    const x = uploadAct(b, [1, 16], xs);
    const f = uploadAct(b, [4], [a, 0, 0, 0]);
    b.rope(x.t, Int32Array.of(p), f.t, 2, headDim);
    const got = downloadAct(b, x.t);
    const c = Math.cos(p * a);
    const s = Math.sin(p * a);
    const tol = 8 * UNIT_ROUNDOFF[kind] * 16;
    for (const h of [0, 1]) {
      const o = h * headDim;
      const x1 = xs[o]!;
      const x2 = xs[o + 4]!;
      expect(Math.abs(got[o]! - (x1 * c - x2 * s))).toBeLessThan(tol);
      expect(Math.abs(got[o + 4]! - (x2 * c + x1 * s))).toBeLessThan(tol);
      // Angle 0 for the other pairs: unchanged.
      for (const i of [1, 2, 3, 5, 6, 7]) expect(got[o + i]).toBe(xs[o + i]);
    }
  });

  it('Q and K in one call equal two calls bit for bit, and counts must agree', () => {
    const rng = new Rng(41);
    const pos = Int32Array.of(3, 900, 17);
    const f = uploadAct(b, [8], invFreqs(16));
    const qv = rng.normals(3 * 64);
    const kv = rng.normals(3 * 32);
    const [q1, k1, q2, k2] = [uploadAct(b, [3, 64], qv), uploadAct(b, [3, 32], kv), uploadAct(b, [3, 64], qv), uploadAct(b, [3, 32], kv)];
    b.rope([q1.t, k1.t], pos, f.t, [4, 2], 16);
    b.rope(q2.t, pos, f.t, 4, 16);
    b.rope(k2.t, pos, f.t, 2, 16);
    expect(bitsEqual(downloadRaw(b, q1.t), downloadRaw(b, q2.t))).toBe(true);
    expect(bitsEqual(downloadRaw(b, k1.t), downloadRaw(b, k2.t))).toBe(true);
    expectError(() => b.rope([q1.t, k1.t], pos, f.t, [4], 16), 'EINVAL', /^rope: 2 tensors but 1 head counts$/);
    expectError(() => b.rope([q1.t, k1.t], pos, f.t, [4, 4], 16), 'EINVAL', /rope: x .* is not 4 heads of 16/);
    expectError(() => b.rope([q1.t, k1.t.rows(0, 2)], pos, f.t, [4, 2], 16), 'EINVAL', /rope: got 3 positions for 2 rows/);
    expectError(() => b.rope([], pos, f.t, [], 16), 'EINVAL', /^rope: x must not be empty$/);
  });

  it('then: the KV writes in the same call equal rope followed by kvWrite, bit for bit', () => {
    const rng = new Rng(43);
    const f = uploadAct(b, [8], invFreqs(16));
    const qv = rng.normals(3 * 64);
    const kv = rng.normals(3 * 32);
    const vv = rng.normals(3 * 32);
    const fill = () => uploadAct(b, [40, 32], new Float64Array(40 * 32).fill(5)).t;
    const run = (fused: boolean, pos: Int32Array, wpos: Int32Array) => {
      const [q, k, v] = [uploadAct(b, [3, 64], qv).t, uploadAct(b, [3, 32], kv).t, uploadAct(b, [3, 32], vv).t];
      const [kc, vc] = [fill(), fill()];
      if (fused) b.rope([q, k], pos, f.t, [4, 2], 16, { cache: [kc, vc], src: [k, v], positions: wpos });
      else {
        b.rope([q, k], pos, f.t, [4, 2], 16);
        b.kvWrite([kc, vc], [k, v], wpos);
      }
      return [q, k, kc, vc].map((t) => downloadRaw(b, t));
    };
    // Writes at the rotation's positions (the model's), and elsewhere (a planted fault's).
    for (const wpos of [Int32Array.of(3, 39, 17), Int32Array.of(2, 38, 16)]) {
      const pos = Int32Array.of(3, 39, 17);
      const fused = run(true, pos, wpos);
      const apart = run(false, pos, wpos);
      fused.forEach((got, i) => expect(bitsEqual(got, apart[i]!), `tensor ${i}, writes at ${wpos.join(',')}`).toBe(true));
    }
    // A source that is only part of a rotated tensor would be copied while it rotates.
    const q = uploadAct(b, [3, 64], qv).t;
    const k = uploadAct(b, [3, 32], kv).t;
    const pos = Int32Array.of(1, 2, 3);
    const buf = uploadAct(b, [4, 64], rng.normals(4 * 64)).t;
    const wide = uploadAct(b, [40, 64], new Float64Array(40 * 64)).t;
    expectError(
      () => b.rope(buf.rows(0, 3), pos, f.t, 4, 16, { cache: [wide], src: [buf.rows(1, 3)], positions: pos }),
      'EINVAL',
      /^rope: then.src\[0\] .*\[3,64\] overlaps x .*\[3,64\] without being it$/,
    );
    expectError(() => b.rope([q, k], pos, f.t, [4, 2], 16, { cache: [fill(), fill()], src: [k], positions: pos }), 'EINVAL', /^rope: then: 2 caches but 1 sources$/);
    expectError(() => b.rope([q, k], pos, f.t, [4, 2], 16, { cache: [fill()], src: [k], positions: Int32Array.of(1, 2, 40) }), 'EINVAL', /kv_write: position 40 at row 2 is outside the KV cache \[0, 40\)/);
  });

  it('position 0 leaves x bit-identical', () => {
    const rng = new Rng(5);
    const x = uploadAct(b, [3, 64], rng.normals(192));
    const before = downloadRaw(b, x.t);
    const f = uploadAct(b, [16], invFreqs(32));
    b.rope(x.t, Int32Array.of(0, 0, 0), f.t, 2, 32);
    expect(bitsEqual(downloadRaw(b, x.t), before)).toBe(true);
  });

  it('each row depends only on its own position (batch invariance)', () => {
    const rng = new Rng(77);
    const M = 9;
    const width = 4 * 16;
    const xs = rng.normals(M * width);
    const pos = rng.ints(M, 300);
    const f = uploadAct(b, [8], invFreqs(16));
    const x = uploadAct(b, [M, width], xs);
    b.rope(x.t, pos, f.t, 4, 16);
    const all = downloadRaw(b, x.t);
    for (let r = 0; r < M; r++) {
      const xr = uploadAct(b, [1, width], xs.subarray(r * width, (r + 1) * width));
      b.rope(xr.t, pos.subarray(r, r + 1), f.t, 4, 16);
      expect(bitsEqual(downloadRaw(b, xr.t), all.subarray(r * width, (r + 1) * width))).toBe(true);
    }
  });

  describe('errors', () => {
    it('rejects an odd head_dim', () => {
      const x = b.alloc(b.actDtype, [1, 6]);
      const f = b.alloc(b.actDtype, [1]);
      expectError(() => b.rope(x, Int32Array.of(0), f, 2, 3), 'EINVAL', /rope: head_dim must be even and > 0, got 3/);
    });

    it('rejects x that is not n_heads x head_dim', () => {
      const x = b.alloc(b.actDtype, [1, 30]);
      const f = b.alloc(b.actDtype, [4]);
      expectError(() => b.rope(x, Int32Array.of(0), f, 4, 8), 'EINVAL', /rope: x .* is not 4 heads of 8/);
    });

    it('rejects inv_freq of the wrong dtype or length', () => {
      const x = b.alloc(b.actDtype, [1, 32]);
      const other = kind === 'cpu' ? 'f64' : 'f32';
      expectError(() => b.rope(x, Int32Array.of(0), b.alloc(other, [8]), 2, 16), 'EINVAL', /rope: inv_freq must be/);
      expectError(() => b.rope(x, Int32Array.of(0), b.alloc(b.actDtype, [16]), 2, 16), 'EINVAL', /rope: inv_freq must be .*\[8\]/);
    });

    it('rejects a position count different from the rows', () => {
      const x = b.alloc(b.actDtype, [2, 32]);
      const f = b.alloc(b.actDtype, [8]);
      expectError(() => b.rope(x, Int32Array.of(0), f, 2, 16), 'EINVAL', /rope: got 1 positions for 2 rows/);
    });
  });
});
