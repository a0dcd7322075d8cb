// silu_mul: out = silu(gate) * up, silu(g) = g / (1 + e^-g)
import { describe, expect, it } from 'vitest';

import { KINDS, UNIT_ROUNDOFF, backend, downloadAct, expectError, expectRelL2, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refSiluMul } from './reference.js';

// Relative L2 bound against the FP64 reference. Elementwise, and the inputs
// are exact, so each element sees only its own roundings: e^-g (libm exp,
// < 1 ulp = 2u), 1 + e^-g (u; no cancellation since both terms are > 0), the
// divide (u) and the multiply (u): at most ~5u relative per element, so
// relL2 <= 5u. Bound 8u: 4.8e-7 on cpu (u = 2^-24; observed 5.6e-8),
// 8.9e-16 on cpu-fp64 (u = 2^-53; observed 2e-17).
const BOUND = { cpu: 8 * UNIT_ROUNDOFF.cpu, 'cpu-fp64': 8 * UNIT_ROUNDOFF['cpu-fp64'] } as const;

const SHAPES: [number, number][] = [
  [1, 1],
  [1, 7],
  [3, 8],
  [5, 9],
  [2, 63],
  [4, 130],
  [3, 257],
];

describe.each(KINDS)('silu_mul on %s', (kind) => {
  const b = backend(kind);

  for (const [M, D] of SHAPES) {
    it(`matches the FP64 reference: [${M}, ${D}]`, () => {
      const rng = new Rng(M * 1000 + D);
      const g = uploadAct(b, [M, D], rng.uniforms(M * D, -8, 8));
      const u = uploadAct(b, [M, D], rng.normals(M * D));
      const out = b.alloc(b.actDtype, [M, D]);
      b.siluMul(out, g.t, u.t);
      expectRelL2(downloadAct(b, out), refSiluMul(g.values, u.values), BOUND[kind], `silu ${kind} [${M},${D}]`);
    });
  }

  it('silu(0) = 0, silu(g) -> g for large g, -> 0 for very negative g', () => {
    const g = uploadAct(b, [1, 4], [0, 40, -40, -1000]);
    const u = uploadAct(b, [1, 4], [3, 1, 1, 1]);
    const out = b.alloc(b.actDtype, [1, 4]);
    b.siluMul(out, g.t, u.t);
    const got = downloadAct(b, out);
    expect(got[0]).toBe(0);
    expect(got[1]).toBe(40);
    expect(Math.abs(got[2]!)).toBeLessThan(1e-15);
    expect(Math.abs(got[3]!)).toBe(0);
  });

  it('works in place (out aliases gate)', () => {
    const rng = new Rng(8);
    const g = uploadAct(b, [2, 9], rng.uniforms(18, -4, 4));
    const u = uploadAct(b, [2, 9], rng.normals(18));
    b.siluMul(g.t, g.t, u.t);
    expectRelL2(downloadAct(b, g.t), refSiluMul(g.values, u.values), BOUND[kind]);
  });

  describe('errors', () => {
    it('rejects gate and up of different shapes', () => {
      const out = b.alloc(b.actDtype, [2, 8]);
      expectError(
        () => b.siluMul(out, b.alloc(b.actDtype, [2, 8]), b.alloc(b.actDtype, [2, 9])),
        'EINVAL',
        /siluMul: a .* and b .* differ in shape/,
      );
    });

    it('rejects tensors not in the activation dtype', () => {
      const t = b.alloc(b.actDtype, [2, 8]);
      expectError(() => b.siluMul(t, t, b.alloc('bf16', [2, 8])), 'EINVAL', /siluMul: b must be/);
    });
  });
});
