// topk: per row, the k largest values, descending; ties go to the lower index;
// NaN ranks below every number.
import { describe, expect, it } from 'vitest';

import { KINDS, backend, expectError, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refTopk } from './reference.js';
import { topK } from '../../src/trace/tracer.js';

// Bound: exact. Selection does no arithmetic: ids must equal the reference
// order and values must equal the stored activations (f32 widened to double
// on cpu) bit for bit, the sign of zero included.

describe.each(KINDS)('topk on %s', (kind) => {
  const b = backend(kind);

  for (const cols of [1, 7, 9, 130, 257]) {
    for (const M of [1, 4]) {
      for (const k of [...new Set([1, Math.min(5, cols), cols])]) {
        it(`matches the reference on random rows: M=${M} cols=${cols} k=${k}`, () => {
          const rng = new Rng(cols * 100 + M * 10 + k);
          const x = uploadAct(b, [M, cols], rng.normals(M * cols));
          const got = b.topk(x.t, k);
          const ref = refTopk(x.values, M, cols, k);
          expect(Array.from(got.ids)).toEqual(ref.ids);
          expect(Array.from(got.values)).toEqual(ref.values);
        });
      }
    }
  }

  it('breaks ties by the lower index', () => {
    // Values from {0, 1, 2, 3}: lots of ties, in random order.
    const rng = new Rng(99);
    const M = 3;
    const cols = 40;
    const x = uploadAct(b, [M, cols], Float64Array.from({ length: M * cols }, () => rng.int(4)));
    const got = b.topk(x.t, 25);
    const ref = refTopk(x.values, M, cols, 25);
    expect(Array.from(got.ids)).toEqual(ref.ids);
    expect(Array.from(got.values)).toEqual(ref.values);
    for (let m = 0; m < M; m++) {
      for (let i = 1; i < 25; i++) {
        const prev = got.values[m * 25 + i - 1]!;
        const cur = got.values[m * 25 + i]!;
        expect(cur).toBeLessThanOrEqual(prev);
        if (cur === prev) expect(got.ids[m * 25 + i]!).toBeGreaterThan(got.ids[m * 25 + i - 1]!);
      }
    }
  });

  it('ranks NaN last, below -Infinity; infinities and signed zeros in order', () => {
    const row = [NaN, -Infinity, 3, NaN, Infinity, 3, -0, 0, -2.5];
    const x = uploadAct(b, [1, row.length], row);
    const got = b.topk(x.t, row.length);
    expect(Array.from(got.ids)).toEqual([4, 2, 5, 6, 7, 8, 1, 0, 3]);
    expect(Array.from(got.values)).toEqual([Infinity, 3, 3, -0, 0, -2.5, -Infinity, NaN, NaN]);
    expect(Object.is(got.values[3], -0)).toBe(true);
    // A NaN-poisoned row cannot win top-1.
    expect(b.topk(x.t, 1).ids[0]).toBe(4);
  });

  it('an all-NaN row returns indices in order', () => {
    const x = uploadAct(b, [2, 4], [NaN, NaN, NaN, NaN, 1, NaN, 2, NaN]);
    const got = b.topk(x.t, 3);
    expect(Array.from(got.ids)).toEqual([0, 1, 2, 2, 0, 1]);
  });

  it('each row is ranked on its own', () => {
    const x = uploadAct(b, [3, 5], [1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0, 9, 0, 9, 0]);
    const got = b.topk(x.t, 2);
    expect(Array.from(got.ids)).toEqual([4, 3, 0, 1, 1, 3]);
    expect(Array.from(got.values)).toEqual([5, 4, 5, 4, 9, 9]);
  });

  describe('errors', () => {
    it('rejects k outside [1, cols]', () => {
      const x = b.alloc(b.actDtype, [2, 6]);
      expectError(() => b.topk(x, 0), 'EINVAL', /topk: k must be in \[1, 6\], got 0/);
      expectError(() => b.topk(x, 7), 'EINVAL', /topk: k must be in \[1, 6\], got 7/);
    });

    it('rejects a weight-dtype tensor', () => {
      expectError(() => b.topk(b.alloc('f16', [2, 6]), 1), 'EINVAL', /topk: x must be/);
    });
  });
});

// The tracer's top-k of a logits row, computed on the host from the row it copied back.
describe("the tracer's host topK", () => {
  const b = backend('cpu');
  it('equals the backend topk on rows with ties, infinities and NaN', () => {
    const rng = new Rng(77);
    for (let t = 0; t < 300; t++) {
      const n = 1 + Math.floor(rng.uniforms(1, 0, 300)[0]!);
      const a = Float32Array.from(rng.uniforms(n, -2, 3), (v) => Math.round(v * 4) / 4);
      if (t % 7 === 0) a[t % n] = NaN;
      if (t % 5 === 0) a[(3 * t) % n] = -Infinity;
      if (t % 11 === 0) a[(5 * t) % n] = Infinity;
      const k = 1 + (t % Math.min(n, 8));
      const x = b.alloc('f32', [1, n]);
      b.upload(x, a);
      expect(topK(a, k), `n=${n} k=${k}`).toEqual(Array.from(b.topk(x, k).ids));
    }
  });
});
