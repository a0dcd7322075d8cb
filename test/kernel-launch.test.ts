// Kernels in hip/ are issued with programmatic dependent launch on NVIDIA
// (hip/compat.h's GRETA_LAUNCH): a kernel's blocks may be resident while the
// kernel before it still runs, and only greta_await_prior_kernels() orders
// them. A kernel that never waits would read its inputs early, and one that
// reads an activation through the non-coherent read-only cache (a const
// __restrict__ pointer) may read stale lines of it even after the wait; this
// scans every kernel body (comments and strings removed) for the wait, every
// __restrict__ for a weight, and every launch for GRETA_LAUNCH.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import { stripCode } from './code-scan.js';

const HIP = join(packageRoot(), 'hip');

/** Each __global__ function of src: its name and its body's text. */
export function kernels(src: string): { name: string; body: string }[] {
  const code = stripCode(src);
  const out: { name: string; body: string }[] = [];
  for (const m of code.matchAll(/__global__\b/g)) {
    const open = code.indexOf('{', m.index);
    const head = code.slice(m.index, open);
    const name = /(\w+)\s*\(/.exec(head.replace(/__launch_bounds__\s*\([^)]*\)|GRETA_LAUNCH_BOUNDS\s*\((?:[^()]|\([^()]*\))*\)/g, ''))?.[1] ?? '?';
    let depth = 0;
    let i = open;
    for (; i < code.length; i++) {
      if (code[i] === '{') depth++;
      else if (code[i] === '}' && --depth === 0) break;
    }
    out.push({ name, body: code.slice(open, i + 1) });
  }
  return out;
}

/** What src may read through the non-coherent cache besides weights: __restrict__ pointers but `const W* __restrict__ w` (or a tiled weight's `const uint4* __restrict__ w`), __ldg, .nc. */
export function readOnlyCacheReads(src: string): string[] {
  const code = stripCode(src);
  const restrict = [...code.matchAll(/([\w:<>]+\s*\*\s*)__restrict__\s+(\w+)/g)]
    .map((m) => `${m[1]!.replace(/\s+/g, '')}__restrict__ ${m[2]}`)
    .filter((r) => r !== 'W*__restrict__ w' && r !== 'uint4*__restrict__ w');
  return [...restrict, ...[...code.matchAll(/__ldg|\.nc\b/g)].map((m) => m[0])];
}

const sources = readdirSync(HIP).filter((f) => f.endsWith('.hip'));

describe('kernel launches (hip/)', () => {
  it('finds the kernels', () => {
    const all = sources.flatMap((f) => kernels(readFileSync(join(HIP, f), 'utf8')).map((k) => k.name));
    expect(all).toContain('mma_gemv_kernel');
    expect(all).toContain('rmsnorm_kernel');
    expect(all.length).toBeGreaterThanOrEqual(20);
  });

  for (const file of sources) {
    it(`${file}: every kernel waits for the kernels before it`, () => {
      for (const k of kernels(readFileSync(join(HIP, file), 'utf8')))
        expect(k.body, `${file}: ${k.name}`).toMatch(/\bgreta_await_prior_kernels\(\)/);
    });
    it(`${file}: only weights are read through the read-only cache (const W* __restrict__ w)`, () => {
      expect(readOnlyCacheReads(readFileSync(join(HIP, file), 'utf8'))).toEqual([]);
    });
    it(`${file}: every launch is GRETA_LAUNCH`, () => {
      expect(stripCode(readFileSync(join(HIP, file), 'utf8'))).not.toMatch(/hipLaunchKernelGGL|<<</);
    });
  }

  it('an activation read through the read-only cache is caught', () => {
    const src = '__global__ void f(float* __restrict__ out, const float* __restrict__ x, const W* __restrict__ w) {\n' +
      '  // const float* __restrict__ in_a_comment\n  out[0] = __ldg(x) + w[0].v;\n}\n';
    expect(readOnlyCacheReads(src)).toEqual(['float*__restrict__ out', 'float*__restrict__ x', '__ldg']);
  });

  it('a kernel without the wait is caught', () => {
    const [k] = kernels('__global__ void GRETA_LAUNCH_BOUNDS(256, (2 > 1 ? 2 : 1)) f(int* x) { // greta_await_prior_kernels();\n if (x) { x[0] = 1; } }\n');
    expect(k!.name).toBe('f');
    expect(k!.body).not.toMatch(/\bgreta_await_prior_kernels\(\)/);
  });
});
