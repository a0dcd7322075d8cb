// add: out = a + b
import { describe, expect, it } from 'vitest';

import { KINDS, UNIT_ROUNDOFF, backend, downloadAct, expectError, expectRelL2, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refAdd } from './reference.js';

// Bound: one IEEE addition per element is correctly rounded, so every element
// has relative error <= u and the relative L2 is <= u (2^-24 on cpu, 2^-53 on
// cpu-fp64). Stronger still, and checked too: each output equals the exact sum
// rounded to the activation dtype (Math.fround on cpu, the JS double sum on
// cpu-fp64).

const SHAPES: [number, number][] = [
  [1, 1],
  [1, 7],
  [3, 8],
  [5, 9],
  [2, 63],
  [4, 130],
  [3, 257],
];

describe.each(KINDS)('add on %s', (kind) => {
  const b = backend(kind);
  const round = kind === 'cpu' ? Math.fround : (v: number) => v;

  for (const [M, D] of SHAPES) {
    it(`matches the FP64 reference and is correctly rounded: [${M}, ${D}]`, () => {
      const rng = new Rng(M * 977 + D);
      const a = uploadAct(b, [M, D], rng.normals(M * D));
      const c = uploadAct(b, [M, D], rng.normals(M * D, 1e-3));
      const out = b.alloc(b.actDtype, [M, D]);
      b.add(out, a.t, c.t);
      const got = downloadAct(b, out);
      const ref = refAdd(a.values, c.values);
      // <= u, not < u: allow equality with the bound.
      expectRelL2(got, ref, UNIT_ROUNDOFF[kind] * (1 + 1e-9), `add ${kind} [${M},${D}]`);
      for (let i = 0; i < ref.length; i++) expect(got[i]).toBe(round(ref[i]!));
    });
  }

  it('works in place (residual: x = x + y)', () => {
    const rng = new Rng(4);
    const x = uploadAct(b, [3, 9], rng.normals(27));
    const y = uploadAct(b, [3, 9], rng.normals(27));
    b.add(x.t, x.t, y.t);
    const got = downloadAct(b, x.t);
    const ref = refAdd(x.values, y.values);
    for (let i = 0; i < ref.length; i++) expect(got[i]).toBe(round(ref[i]!));
  });

  describe('errors', () => {
    it('rejects inputs of different shapes', () => {
      const out = b.alloc(b.actDtype, [2, 8]);
      expectError(() => b.add(out, b.alloc(b.actDtype, [2, 8]), b.alloc(b.actDtype, [8, 2])), 'EINVAL', /add: a .* and b .* differ in shape/);
      expectError(() => b.add(b.alloc(b.actDtype, [1, 8]), out, out), 'EINVAL', /add: out .* and a .* differ in shape/);
    });
  });
});

// copy: dst = src, any dtype, any shape of the same size.
describe.each(KINDS)('copy on %s', (kind) => {
  const b = backend(kind);

  it('copies the bits of f32/f64 activations and of bf16 weights', () => {
    const rng = new Rng(5);
    const a = uploadAct(b, [3, 7], rng.normals(21));
    const out = b.alloc(b.actDtype, [21]);
    b.copy(out, a.t);
    expect(Array.from(downloadAct(b, out))).toEqual(Array.from(downloadAct(b, a.t)));
    const w = b.alloc('bf16', [4, 4]);
    b.upload(w, Uint16Array.from({ length: 16 }, (_, i) => 0x3f80 + i));
    const w2 = b.alloc('bf16', [16]);
    b.copy(w2, w);
    expect(Array.from(b.download(w2))).toEqual(Array.from({ length: 16 }, (_, i) => 0x3f80 + i));
  });

  it('copies a range of elements between offsets', () => {
    const src = b.alloc(b.actDtype, [3, 4]);
    b.upload(src, b.actDtype === 'f64' ? Float64Array.from({ length: 12 }, (_, i) => i) : Float32Array.from({ length: 12 }, (_, i) => i));
    const dst = b.alloc(b.actDtype, [10, 1]);
    b.fillUniform(dst, 0n, 0, -1);
    b.copy(dst, src, 5, 4, 4); // row 1 of src to elements 5..8
    expect(Array.from(downloadAct(b, dst))).toEqual([-1, -1, -1, -1, -1, 4, 5, 6, 7, -1]);
  });

  it('rejects tensors of another dtype or size, and ranges outside either tensor', () => {
    const a = b.alloc(b.actDtype, [2, 4]);
    expectError(() => b.copy(b.alloc(b.actDtype, [7]), a), 'EINVAL', /copy: dst .* and src .* differ in size/);
    expectError(() => b.copy(b.alloc('bf16', [8]), a), 'EINVAL', /copy: dst .* and src .* differ in dtype/);
    expectError(() => b.copy(b.alloc(b.actDtype, [8]), a, 0, 6, 3), 'EINVAL', /copy: elements \[6, 9\) are outside src/);
    expectError(() => b.copy(b.alloc(b.actDtype, [8]), a, 6, 0, 3), 'EINVAL', /copy: elements \[6, 9\) are outside dst/);
  });
});
