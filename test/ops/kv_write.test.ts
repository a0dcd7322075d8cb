// kv_write: cache[pos[m], :] = src[m, :]
import { describe, expect, it } from 'vitest';

import { KINDS, backend, bitsEqual, downloadAct, downloadRaw, expectError, expectRelL2, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refKvWrite } from './reference.js';

// Bound: 0. A copy does no arithmetic: the written rows must equal src bit for
// bit and every other cache row must be left untouched.

describe.each(KINDS)('kv_write on %s', (kind) => {
  const b = backend(kind);

  for (const D of [1, 7, 8, 9, 64, 130]) {
    for (const M of [1, 5]) {
      it(`writes rows at their positions, others untouched: M=${M} D=${D}`, () => {
        const rng = new Rng(D * 100 + M);
        const T = 23;
        const cache = uploadAct(b, [T, D], rng.normals(T * D));
        const src = uploadAct(b, [M, D], rng.normals(M * D));
        // Distinct positions in arbitrary order, the first and last slots included when M > 1.
        const perm = rng.permutation(T).filter((p) => p !== 0 && p !== T - 1);
        const pos = M === 1 ? Int32Array.of(T - 1) : Int32Array.of(T - 1, ...perm.slice(0, M - 2), 0);
        b.kvWrite(cache.t, src.t, pos);
        const got = downloadAct(b, cache.t);
        const ref = refKvWrite(cache.values, D, src.values, pos);
        expectRelL2(got, ref, Number.MIN_VALUE, `kv_write ${kind} M=${M} D=${D}`);
        expect(Array.from(got)).toEqual(Array.from(ref));
      });
    }
  }

  it('copies bits exactly (NaN, -0, infinities, subnormals)', () => {
    const D = 6;
    const special = [NaN, -0, Infinity, -Infinity, kind === 'cpu' ? 1e-40 : 5e-324, -1.5];
    const src = uploadAct(b, [1, D], special);
    const cache = uploadAct(b, [4, D], new Float64Array(4 * D).fill(7));
    b.kvWrite(cache.t, src.t, Int32Array.of(2));
    const got = downloadRaw(b, cache.t);
    expect(bitsEqual(got.subarray(2 * D, 3 * D), downloadRaw(b, src.t))).toBe(true);
    expect(Array.from(got.subarray(0, 2 * D))).toEqual(new Array(2 * D).fill(7));
    expect(Array.from(got.subarray(3 * D))).toEqual(new Array(D).fill(7));
  });

  it('K and V in one call equal two calls bit for bit, and pairs must match', () => {
    const rng = new Rng(8);
    const [kc1, vc1, kc2, vc2] = [0, 1, 2, 3].map(() => uploadAct(b, [10, 6], new Float64Array(60).fill(3)));
    const k = uploadAct(b, [2, 6], rng.normals(12));
    const v = uploadAct(b, [2, 6], rng.normals(12));
    const pos = Int32Array.of(9, 4);
    b.kvWrite([kc1!.t, vc1!.t], [k.t, v.t], pos);
    b.kvWrite(kc2!.t, k.t, pos);
    b.kvWrite(vc2!.t, v.t, pos);
    expect(bitsEqual(downloadRaw(b, kc1!.t), downloadRaw(b, kc2!.t))).toBe(true);
    expect(bitsEqual(downloadRaw(b, vc1!.t), downloadRaw(b, vc2!.t))).toBe(true);
    expectError(() => b.kvWrite([kc1!.t, vc1!.t], [k.t], pos), 'EINVAL', /^kv_write: 2 caches but 1 sources$/);
    expectError(() => b.kvWrite([kc1!.t, vc1!.t], [k.t, v.t], Int32Array.of(9, 10)), 'EINVAL', /kv_write: position 10 at row 1 is outside the KV cache \[0, 10\)/);
  });

  it('writes through a row view of the source', () => {
    const rng = new Rng(3);
    const D = 9;
    const src = uploadAct(b, [4, D], rng.normals(4 * D));
    const cache = uploadAct(b, [8, D], new Float64Array(8 * D));
    b.kvWrite(cache.t, src.t.rows(2, 2), Int32Array.of(5, 6));
    const got = downloadAct(b, cache.t);
    expect(Array.from(got.subarray(5 * D, 7 * D))).toEqual(Array.from(src.values.subarray(2 * D, 4 * D)));
  });

  describe('errors', () => {
    it('rejects a position outside the KV cache', () => {
      const cache = b.alloc(b.actDtype, [16, 8]);
      const src = b.alloc(b.actDtype, [2, 8]);
      expectError(
        () => b.kvWrite(cache, src, Int32Array.of(3, 16)),
        'EINVAL',
        /kv_write: position 16 at row 1 is outside the KV cache \[0, 16\)/,
      );
      expectError(() => b.kvWrite(cache, src, Int32Array.of(-1, 0)), 'EINVAL', /position -1 at row 0 is outside the KV cache/);
    });

    it('rejects a width mismatch and a wrong position count', () => {
      const cache = b.alloc(b.actDtype, [16, 8]);
      expectError(() => b.kvWrite(cache, b.alloc(b.actDtype, [2, 9]), Int32Array.of(0, 1)), 'EINVAL', /kv_write: .* differ in width/);
      expectError(() => b.kvWrite(cache, b.alloc(b.actDtype, [2, 8]), Int32Array.of(0)), 'EINVAL', /kv_write: got 1 positions for 2 rows/);
    });
  });
});
