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
      const code = stripCode(readFileSync(join(HIP, file), 'utf8'));
      const restrict = [...code.matchAll(/([\w:<>]+\s*\*\s*)__restrict__\s+(\w+)/g)].map((m) => `${m[1]!.replace(/\s+/g, '')}__restrict__ ${m[2]}`);
      expect(restrict.filter((r) => r !== 'W*__restrict__ w')).toEqual([]);
      expect(code).not.toMatch(/__ldg|\.nc\b/);
    });
    it(`${file}: every launch is GRETA_LAUNCH`, () => {
      expect(stripCode(readFileSync(join(HIP, file), 'utf8'))).not.toMatch(/hipLaunchKernelGGL|<<</);
    });
  }

  it('a kernel without the wait is caught', () => {
    const [k] = kernels('__global__ void GRETA_LAUNCH_BOUNDS(256, (2 > 1 ? 2 : 1)) f(int* x) { // greta_await_prior_kernels();\n if (x) { x[0] = 1; } }\n');
    expect(k!.name).toBe('f');
    expect(k!.body).not.toMatch(/\bgreta_await_prior_kernels\(\)/);
  });
});
