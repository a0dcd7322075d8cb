// Wave size is never assumed in hip/: every reduction, lane split, shuffle and
// LDS size derives from GRETA_WAVE_SIZE, which hip/compat.h (the one file that
// knows the vendor) takes from the target. This scans every other source in
// hip/ as the compiler reads it (comments, strings and character literals
// removed) for an integer literal worth 32 or 64, in any base, with any suffix
// or digit separator, and for the cross-lane primitives that carry a wave size
// of their own. check:hip proves the other half: the gfx942 build is wave 64
// in every kernel, and a wave-32 target is refused.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import { stripCode } from './code-scan.js';

const HIP = join(packageRoot(), 'hip');

/**
 * Literals of 32 or 64 that are not a wave size, by file and constant name,
 * with the reason. A stale entry fails the test too, so the list stays true.
 */
const NOT_WAVE: Record<string, { file: string; why: string }> = {
  RMSNORM_WIDE: { file: 'rmsnorm.hip', why: 'elements a thread of the norm keeps in registers, for rows up to 8192 (70B-class widths)' },
  GRETA_KEY_CHUNK: { file: 'attention.h', why: "the reduction-order rule's fixed key split: chunks depend on the key index alone, whatever the wave" },
  WG_WIDE: { file: 'attention_chain.hip', why: "columns of the wgmma prefill's block, the instruction's n (m64n32k16): tokens, not lanes" },
  DESC_SBO_BIT: { file: 'wgmma.h', why: "the bit where a wgmma shared-memory descriptor's stride field starts (PTX ISA)" },
  TILE_GROUP: { file: 'attention.hip', why: "the prefill tile kernel's unit of 4 row x 8 column groups: a thread layout any wave size runs, sized for bank-free loads" },
};

/** Lane-level primitives with an implied wave size: only through compat.h's GRETA_* map or common.h's helpers. */
const CROSS_LANE =
  /\b(warpSize|__AMDGCN_WAVEFRONT_SIZE__?|__shfl\w*|__ballot\w*|__activemask|__syncwarp|__lane_id|__builtin_amdgcn_(?:ds_swizzle|ds_bpermute|ds_permute|readlane|readfirstlane|mov_dpp\w*|update_dpp|wave_barrier|mbcnt_lo|mbcnt_hi))\b/g;

/** The value of a C++ integer literal (pp-number), or undefined for a floating one. */
export function integerValue(tok: string): bigint | undefined {
  const t = tok.replace(/'/g, '');
  const hex = /^0[xX]/.test(t);
  if (t.includes('.') || (hex ? /[pP]/.test(t) : /[eE]/.test(t))) return undefined;
  const body = t.replace(/[uUlLzZ]+$/, '');
  try {
    if (hex || /^0[bB]/.test(body)) return BigInt(body);
    if (/^0[0-7]+$/.test(body)) return BigInt('0o' + body.slice(1));
    return /^\d+$/.test(body) ? BigInt(body) : undefined;
  } catch {
    return undefined;
  }
}

export interface Finding {
  file: string;
  line: number;
  what: string;
  text: string;
}

/** Literal wave sizes and raw cross-lane primitives in one source of hip/. */
export function scanWave(file: string, src: string): Finding[] {
  const code = stripCode(src);
  const lines = code.split('\n');
  const found: Finding[] = [];
  lines.forEach((text, n) => {
    for (const m of text.matchAll(/(?<![\w.])\.?\d(?:[eEpP][+-]|[\w.'])*/g)) {
      const v = integerValue(m[0]);
      if (v === 32n || v === 64n) found.push({ file, line: n + 1, what: `literal ${m[0]}`, text: src.split('\n')[n]!.trim() });
    }
    for (const m of text.matchAll(CROSS_LANE)) found.push({ file, line: n + 1, what: m[1]!, text: src.split('\n')[n]!.trim() });
  });
  return found;
}

/** Findings on the declaration line of an allowed constant of that file, with the constant's name. */
function allowedName(f: Finding): string | undefined {
  const m = /\bconstexpr\s+[\w:]+\s+(\w+)\s*=/.exec(f.text);
  const name = m?.[1];
  return name !== undefined && NOT_WAVE[name]?.file === f.file && f.what.startsWith('literal') ? name : undefined;
}

describe('wave size in hip/', () => {
  const files = readdirSync(HIP)
    .filter((f) => /\.(hip|h)$/.test(f) && f !== 'compat.h')
    .sort();

  it('no literal 32 or 64 and no raw cross-lane primitive governs kernel logic', () => {
    expect(files).toEqual(expect.arrayContaining(['common.h', 'matmul.hip', 'rmsnorm.hip', 'attention.hip', 'topk.hip']));
    const findings = files.flatMap((f) => scanWave(f, readFileSync(join(HIP, f), 'utf8')));
    const used = new Set(findings.map(allowedName).filter((n) => n !== undefined));
    const bad = findings.filter((f) => allowedName(f) === undefined);
    expect(
      bad.map((f) => `hip/${f.file}:${f.line}: ${f.what}: ${f.text}  (derive it from GRETA_WAVE_SIZE, or use compat.h/common.h)`),
    ).toEqual([]);
    // Every exception is still there, so none outlives its reason.
    expect(Object.keys(NOT_WAVE).filter((n) => !used.has(n))).toEqual([]);
  });

  it('compat.h takes the device pass wave size from the target and refuses one the launches do not match', () => {
    const code = stripCode(readFileSync(join(HIP, 'compat.h'), 'utf8'));
    const amd = code.slice(0, code.indexOf('#elif defined(__CUDACC__)'));
    const device = amd.slice(amd.indexOf('#if defined(__HIP_DEVICE_COMPILE__)'));
    expect(device).toMatch(/#define GRETA_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE__\s/);
    expect(device).toMatch(/#if GRETA_WAVE_SIZE != GRETA_AMD_WAVE_SIZE\s+#error/);
  });
});

describe('the wave scan itself', () => {
  const scan = (src: string, file = 'x.hip') => scanWave(file, src).map((f) => `${f.line}:${f.what}`);

  it('finds a wave size written in any form', () => {
    expect(scan('const int lane = threadIdx.x % 64;')).toEqual(['1:literal 64']);
    expect(scan('__shared__ float s[32];\nint w = n / 0x40;\nint u = 64u;')).toEqual(['1:literal 32', '2:literal 0x40', '3:literal 64u']);
    expect(scan("int a = 0b100000, b = 040, c = 6'4, d = 64ull;")).toEqual([
      '1:literal 0b100000',
      '1:literal 040',
      "1:literal 6'4",
      '1:literal 64ull',
    ]);
    expect(scan('for (int m = 1; m < 32; m <<= 1) v += __shfl_xor(v, m);')).toEqual(['1:literal 32', '1:__shfl_xor']);
    expect(scan('x = __builtin_amdgcn_readlane(v, 0); y = warpSize;')).toEqual(['1:__builtin_amdgcn_readlane', '1:warpSize']);
  });

  it('ignores what is not a wave size: types, floats, comments, strings, other numbers', () => {
    const src = [
      'int64_t a; uint32_t b; float c = 64.0f; double d = 1e32, e = 0x1p64, f = .64;',
      '// 64 lanes per wave, 32 on NVIDIA',
      '/* a block of 64\n   threads */ const char* s = "wave 32"; char q = \'6\';',
      'int g = 640, h = 3264, i = 16, j = 128, k = BLOCK / GRETA_WAVE_SIZE;',
    ].join('\n');
    expect(scan(src)).toEqual([]);
  });

  it('allows only the named exceptions, on their own declaration', () => {
    const f = scanWave('attention.h', 'constexpr int GRETA_KEY_CHUNK = 64;\nint x = 64;');
    expect(f.map(allowedName)).toEqual(['GRETA_KEY_CHUNK', undefined]);
    expect(scanWave('rope.hip', 'constexpr int GRETA_KEY_CHUNK = 64;').map(allowedName)).toEqual([undefined]);
  });
});
