// Every HIP op against the cpu-fp64 oracle on fresh random inputs (run by
// `npm run test:gpu` on a machine with a GPU and a `npm run build:hip` addon;
// GRETA_TEST_BACKEND=cpu runs the same checks on the cpu backend).
// Outputs live in the middle of a larger buffer poisoned with NaN: the op must
// write every output element and no guard element.
//
// Bounds are relative L2 against fp64, and follow from fp32 arithmetic
// (unit roundoff u = 6e-8):
// - embedding, kv_write, add: exact copies or one rounding: 0 / 1e-7.
// - matmul: an fp32 sum of K/32 block products from the matrix unit, each exact up to its
//   instruction's rounding (hip/matmul.h); random-sign terms grow error ~ sqrt(K) u: 2e-6 up to
//   K = 14336.
// - rmsnorm: a D-long sum of squares, one sqrt, two products: 1e-6.
// - rope: the fp32 angle pos * inv_freq carries |angle| u absolute error; positions < 64: 1e-5.
// - silu_mul: expf and one division: 1e-6.
// - attention: two K-long dot products, expf, running rescale: 5e-6.
import { describe, expect, it } from 'vitest';
import { createBackend, readSpanStats, SPAN_STATS, type Backend, type DType, type Tensor, type WeightDType } from '../../src/native.js';
import { deviceBackend } from './backend.js';

// The backend under test: hip, or the one GRETA_TEST_BACKEND names (backend.ts).
const hip = createBackend(deviceBackend());
const oracle = createBackend('cpu-fp64');
const GUARD = 2;
// Fresh inputs each run; GRETA_TEST_SEED=<n> replays one.
let seed = BigInt(process.env.GRETA_TEST_SEED ?? Date.now());
console.log(`GRETA_TEST_SEED=${seed}`);

function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < want.length; i++) {
    d += (got[i]! - want[i]!) ** 2;
    r += want[i]! ** 2;
  }
  return Math.sqrt(d / Math.max(r, 1e-300));
}

/**
 * A random tensor on both backends with the same values (weights in their dtype, activations in each
 * one's); `matmul`: a matmul weight (tiled on hip).
 */
function pair(shape: number[], dtype: WeightDType | 'act', scale = 1, offset = 0, matmul = false): [Tensor, Tensor] {
  const s = seed++;
  const h = hip.alloc(dtype === 'act' ? 'f32' : dtype, shape, { matmul });
  hip.fillUniform(h, s, scale, offset);
  if (dtype !== 'act') {
    const o = oracle.alloc(dtype, shape, { matmul });
    oracle.fillUniform(o, s, scale, offset); // same counter hash: identical bits
    return [h, o];
  }
  const o = oracle.alloc('f64', shape);
  oracle.upload(o, Float64Array.from(hip.download(h) as Float32Array));
  return [h, o];
}

/** An output of `rows` rows inside a NaN-poisoned buffer with GUARD rows each side. */
function guarded(b: Backend, rows: number, cols: number): { buf: Tensor; out: Tensor } {
  const dt: DType = b.actDtype;
  const buf = b.alloc(dt, [rows + 2 * GUARD, cols]);
  b.upload(buf, dt === 'f32' ? new Float32Array((rows + 2 * GUARD) * cols).fill(NaN) : new Float64Array((rows + 2 * GUARD) * cols).fill(NaN));
  return { buf, out: buf.rows(GUARD, rows) };
}

function checkGuards(buf: Tensor, rows: number, cols: number): Float32Array {
  const all = hip.download(buf) as Float32Array;
  const before = all.subarray(0, GUARD * cols);
  const after = all.subarray((GUARD + rows) * cols);
  expect([...before, ...after].every(Number.isNaN), 'guard rows were written').toBe(true);
  const body = all.subarray(GUARD * cols, (GUARD + rows) * cols);
  expect(body.some(Number.isNaN), 'an output element was not written').toBe(false);
  return body;
}

function compare(name: string, got: Float32Array, want: Float64Array, bound: number): void {
  const e = relL2(got, want);
  console.log(`${name.padEnd(48)} rel_l2 ${e.toExponential(2)} (bound ${bound.toExponential(0)})`);
  expect(e).toBeLessThanOrEqual(bound);
}

describe(`${hip.name} ops on ${hip.device}`, () => {
  for (const [M, K, N] of [
    [1, 4096, 4096],
    [7, 1000, 333],
    [37, 1000, 333],
    [64, 64, 192],
    [3, 13, 5],
    [205, 4096, 512],
    [17, 14336, 256],
    // Long enough for the widest prefill block (on sm_90a the 192 x 104 wgmma shape), whose last
    // row block runs past N = 2000.
    [2048, 256, 2000],
  ] as const) {
    for (const wd of ['f32', 'f16', 'bf16'] as const) {
      it(`matmul [${M},${K}] x [${N},${K}]^T ${wd}`, () => {
        const [xh, xo] = pair([M, K], 'act');
        const [wh, wo] = pair([N, K], wd, Math.sqrt(3 / K), 0, true);
        const g = guarded(hip, M, N);
        hip.matmul(g.out, xh, wh);
        const ref = oracle.alloc('f64', [M, N]);
        oracle.matmul(ref, xo, wo);
        compare(`matmul M=${M} K=${K} N=${N} ${wd}`, checkGuards(g.buf, M, N), oracle.download(ref) as Float64Array, 2e-6);
      });
    }
  }

  // Partial row and column tiles, both paths over K (K % 8 == 0 or not), every weight dtype.
  it('matmul is batch invariant: each row of an M-row call equals that row alone, bit for bit', () => {
    for (const [M, K, N, wd] of [
      [205, 4096, 1024, 'bf16'],
      [37, 1000, 333, 'f32'],
      [33, 130, 77, 'f16'],
      [9, 4096, 100, 'bf16'],
      [2048, 256, 2000, 'bf16'],
      // 192 x 56 blocks on sm_90a, the last past N.
      [205, 4096, 6000, 'bf16'],
    ] as const) {
      const [xh] = pair([M, K], 'act');
      const [wh] = pair([N, K], wd, Math.sqrt(3 / K), 0, true);
      const all = hip.alloc('f32', [M, N]);
      hip.matmul(all, xh, wh);
      const full = hip.download(all) as Float32Array;
      for (const r of [0, 1, M - 2, M - 1]) {
        const one = hip.alloc('f32', [1, N]);
        hip.matmul(one, xh.rows(r, 1), wh);
        expect(Buffer.from((hip.download(one) as Float32Array).buffer)).toEqual(
          Buffer.from(full.slice(r * N, (r + 1) * N).buffer),
        );
      }
    }
  });

  // The matrix-unit path at Llama-3-8B projection shapes: decode (M = 1), each launch shape and its
  // edges (8, 9, 16, 17, 32, 33) and prefill (205) give every row the bits of the 205-row call.
  // hip only: on the cpu stand-in (GRETA_TEST_BACKEND=cpu) these shapes take minutes, and
  // test/ops/matmul.test.ts holds the cpu backend's invariance.
  it.skipIf(hip.name !== 'hip')('matmul rows are the same bits at every M on the Llama-3-8B shapes (1 to 33 rows, 205)', () => {
    for (const [N, K] of [
      [6144, 4096],
      [4096, 14336],
      [28672, 4096],
      [128256, 4096],
    ] as const) {
      // On the device only: no oracle copy of a 1 GB weight.
      const xh = hip.alloc('f32', [205, K]);
      hip.fillUniform(xh, seed++, 1, 0);
      const wh = hip.alloc('bf16', [N, K], { matmul: true });
      hip.fillUniform(wh, seed++, Math.sqrt(3 / K), 0);
      const all = hip.alloc('f32', [205, N]);
      hip.matmul(all, xh, wh);
      const full = hip.download(all) as Float32Array;
      all.free();
      for (const M of [1, 8, 9, 16, 17, 32, 33]) {
        const part = hip.alloc('f32', [M, N]);
        hip.matmul(part, xh.rows(0, M), wh);
        const got = Buffer.from((hip.download(part) as Float32Array).buffer);
        // Buffer.equals: toEqual walks 100 MB element by element.
        expect(got.equals(Buffer.from(full.buffer, 0, M * N * 4)), `N=${N} K=${K} M=${M}`).toBe(true);
        part.free();
      }
      const last = hip.alloc('f32', [1, N]);
      hip.matmul(last, xh.rows(204, 1), wh);
      const got = Buffer.from((hip.download(last) as Float32Array).buffer);
      expect(got.equals(Buffer.from(full.buffer, 204 * N * 4, N * 4)), `N=${N} K=${K} row 204 alone`).toBe(true);
      for (const t of [last, xh, wh]) t.free();
    }
  });


  // The fused projections of Llama-3-8B (Q, K, V and gate, up): each output
  // equals its own matmul bit for bit. Device operands only (no oracle copy);
  // the 8B shapes on a GPU, small ones on the cpu stand-in.
  const device = (shape: number[], dtype: 'f32' | 'bf16', scale: number, matmul = false): Tensor => {
    const t = hip.alloc(dtype, shape, { matmul });
    hip.fillUniform(t, seed++, scale, 0);
    return t;
  };
  it('matmul with split outputs equals the unfused matmuls, bit for bit', () => {
    const cases: (readonly [number, number, readonly number[]])[] =
      hip.name === 'hip'
        ? [
            [1, 4096, [4096, 1024, 1024]],
            [205, 4096, [4096, 1024, 1024]],
            [1, 4096, [14336, 14336]],
            [7, 1000, [333, 5, 8]],
          ]
        : [
            [1, 256, [64, 16, 16]],
            [9, 256, [64, 16, 16]],
            [7, 1000, [333, 5, 8]],
          ];
    for (const [M, K, widths] of cases) {
      const N = widths.reduce((a, c) => a + c, 0);
      const xh = device([M, K], 'f32', 1);
      const wh = device([N, K], 'bf16', Math.sqrt(3 / K), true);
      const outs = widths.map((c) => hip.alloc('f32', [M, c]));
      hip.matmul(outs, xh, wh);
      let row = 0;
      widths.forEach((c, i) => {
        const alone = hip.alloc('f32', [M, c]);
        // Its own weight: a view of a tiled weight is one only from a tile's first row.
        const part = hip.alloc('bf16', [c, K], { matmul: true });
        hip.upload(part, hip.download(wh.rows(row, c)));
        hip.matmul(alone, xh, part);
        // Buffer.equals: a deep toEqual over megabytes takes the test runner minutes.
        expect(Buffer.from((hip.download(outs[i]!) as Float32Array).buffer).equals(Buffer.from((hip.download(alone) as Float32Array).buffer))).toBe(true);
        row += c;
      });
    }
  });

  it('addRmsnorm equals add then rmsnorm bit for bit, and copy moves the bits', () => {
    for (const [M, D] of [
      [1, 4096],
      [205, 4096],
      [3, 1000],
    ] as const) {
      const a = device([M, D], 'f32', 1);
      const c = device([M, D], 'f32', 1);
      const w = device([D], 'bf16', 0.1);
      const sum = hip.alloc('f32', [M, D]);
      const out = hip.alloc('f32', [M, D]);
      hip.addRmsnorm(sum, out, a, c, w, 1e-5);
      const sum2 = hip.alloc('f32', [M, D]);
      const out2 = hip.alloc('f32', [M, D]);
      hip.add(sum2, a, c);
      hip.rmsnorm(out2, sum2, w, 1e-5);
      const bits = (t: Tensor) => Buffer.from((hip.download(t) as Float32Array).buffer);
      expect(bits(sum).equals(bits(sum2))).toBe(true);
      expect(bits(out).equals(bits(out2))).toBe(true);
      const copied = hip.alloc('f32', [M * D]);
      hip.copy(copied, out);
      expect(bits(copied).equals(bits(out))).toBe(true);
    }
  });

  for (const [M, D] of [
    [1, 4096],
    [5, 64],
    [3, 1000],
  ] as const) {
    it(`rmsnorm [${M},${D}]`, () => {
      const [xh, xo] = pair([M, D], 'act', 2);
      const [wh, wo] = pair([D], 'bf16', 0.1, 1);
      const g = guarded(hip, M, D);
      hip.rmsnorm(g.out, xh, wh, 1e-5);
      const ref = oracle.alloc('f64', [M, D]);
      oracle.rmsnorm(ref, xo, wo, 1e-5);
      compare(`rmsnorm M=${M} D=${D}`, checkGuards(g.buf, M, D), oracle.download(ref) as Float64Array, 1e-6);
    });
  }

  it('embedding, add, silu_mul, kv_write', () => {
    const [th, to] = pair([1000, 96], 'bf16');
    const ids = Int32Array.of(0, 999, 17, 17, 512);
    let g = guarded(hip, 5, 96);
    hip.embedding(g.out, th, ids);
    const ref = oracle.alloc('f64', [5, 96]);
    oracle.embedding(ref, to, ids);
    compare('embedding bf16', checkGuards(g.buf, 5, 96), oracle.download(ref) as Float64Array, 0);
    // A tied table is the classifier's matmul weight (tiled on hip).
    const [tt, tto] = pair([1000, 96], 'bf16', 1, 0, true);
    g = guarded(hip, 5, 96);
    hip.embedding(g.out, tt, ids);
    oracle.embedding(ref, tto, ids);
    compare('embedding bf16, a matmul weight', checkGuards(g.buf, 5, 96), oracle.download(ref) as Float64Array, 0);

    const [ah, ao] = pair([9, 300], 'act');
    const [bh, bo] = pair([9, 300], 'act');
    for (const op of ['add', 'siluMul'] as const) {
      g = guarded(hip, 9, 300);
      hip[op](g.out, ah, bh);
      const r = oracle.alloc('f64', [9, 300]);
      oracle[op](r, ao, bo);
      compare(op, checkGuards(g.buf, 9, 300), oracle.download(r) as Float64Array, op === 'add' ? 1e-7 : 1e-6);
    }

    const cache = guarded(hip, 16, 64);
    const src = pair([3, 64], 'act')[0];
    const pos = Int32Array.of(0, 7, 15);
    // Fill the rest of the cache so the poison check covers only the guards.
    hip.kvWrite(cache.out, pair([16, 64], 'act')[0], Int32Array.from({ length: 16 }, (_, i) => i));
    hip.kvWrite(cache.out, src, pos);
    const body = checkGuards(cache.buf, 16, 64);
    const s = hip.download(src) as Float32Array;
    for (let m = 0; m < 3; m++) expect(body.subarray(pos[m]! * 64, pos[m]! * 64 + 64)).toEqual(s.subarray(m * 64, m * 64 + 64));
  });

  it('rope, rotate-half with Llama 3 frequencies', () => {
    const heads = 4;
    const hd = 128;
    const M = 6;
    const buf = hip.alloc('f32', [M + 2 * GUARD, heads * hd]);
    hip.upload(buf, new Float32Array((M + 2 * GUARD) * heads * hd).fill(NaN));
    const x = buf.rows(GUARD, M);
    const [xh, xo] = pair([M, heads * hd], 'act');
    hip.upload(x, hip.download(xh) as Float32Array);
    const inv = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / Math.pow(500000, (2 * i) / hd));
    const fh = hip.alloc('f32', [hd / 2]);
    hip.upload(fh, inv);
    const fo = oracle.alloc('f64', [hd / 2]);
    oracle.upload(fo, Float64Array.from(inv));
    const pos = Int32Array.of(0, 1, 5, 17, 40, 63);
    hip.rope(x, pos, fh, heads, hd);
    oracle.rope(xo, pos, fo, heads, hd);
    compare('rope 4 heads x 128, pos < 64', checkGuards(buf, M, heads * hd), oracle.download(xo) as Float64Array, 1e-5);
  });

  it('rope with its KV writes in one launch equals rope then kvWrite, bit for bit (Llama-3-8B heads)', () => {
    const hd = 128;
    const inv = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / Math.pow(500000, (2 * i) / hd));
    const fh = hip.alloc('f32', [hd / 2]);
    hip.upload(fh, inv);
    for (const [M, pos, wpos] of [
      [1, Int32Array.of(290), Int32Array.of(290)],
      [1, Int32Array.of(290), Int32Array.of(289)],
      [5, Int32Array.of(0, 1, 2, 3, 4), Int32Array.of(0, 1, 2, 3, 4)],
    ] as const) {
      const src = [pair([M, 32 * hd], 'act')[0], pair([M, 8 * hd], 'act')[0], pair([M, 8 * hd], 'act')[0]].map((t) => hip.download(t) as Float32Array);
      const run = (fused: boolean) => {
        const [q, k, v] = src.map((d, i) => {
          const t = hip.alloc('f32', [M, (i === 0 ? 32 : 8) * hd]);
          hip.upload(t, d);
          return t;
        });
        const [kc, vc] = [0, 1].map(() => {
          const t = hip.alloc('f32', [300, 8 * hd]);
          hip.upload(t, new Float32Array(300 * 8 * hd).fill(NaN));
          return t;
        });
        if (fused) hip.rope([q!, k!], pos, fh, [32, 8], hd, { cache: [kc!, vc!], src: [k!, v!], positions: wpos });
        else {
          hip.rope([q!, k!], pos, fh, [32, 8], hd);
          hip.kvWrite([kc!, vc!], [k!, v!], wpos);
        }
        const out = [q!, k!, kc!, vc!].map((t) => new Uint32Array((hip.download(t) as Float32Array).buffer));
        for (const t of [q!, k!, v!, kc!, vc!]) t.free();
        return out;
      };
      const fused = run(true);
      const apart = run(false);
      fused.forEach((got, i) => expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(apart[i]!.buffer)), `M=${M} writes at ${wpos.join(',')}: tensor ${i}`).toBe(0));
    }
    fh.free();
  });

  // The decode row: chunk partials and their merges (1100 keys: 18 chunks in 2 groups, both merge levels); its
  // bits equal the causal rows'. Launches of at most a block an SM take two thread groups a block (32 x 128 at
  // 205 keys, 256-dim heads), more take one (32 x 128 at 1100 keys).
  for (const [H, KVH, hd, keys] of [
    [32, 8, 128, 205],
    [32, 8, 128, 1100],
    [8, 2, 256, 1100],
    [4, 2, 64, 1],
    [8, 1, 64, 130],
    [2, 2, 16, 64],
  ] as const) {
    it(`attention ${H}/${KVH} heads x ${hd}, ${keys} keys: decode row and causal rows`, () => {
      const [kh, ko] = pair([keys, KVH * hd], 'act');
      const [vh, vo] = pair([keys, KVH * hd], 'act');
      const M = Math.min(keys, 5);
      const [qh, qo] = pair([M, H * hd], 'act');
      const pos = Int32Array.from({ length: M }, (_, i) => keys - M + i);
      const g = guarded(hip, M, H * hd);
      hip.attention(g.out, qh, kh, vh, pos, H, KVH, hd);
      const ref = oracle.alloc('f64', [M, H * hd]);
      oracle.attention(ref, qo, ko, vo, pos, H, KVH, hd);
      const body = checkGuards(g.buf, M, H * hd);
      compare(`attention ${H}/${KVH}x${hd} keys=${keys}`, body, oracle.download(ref) as Float64Array, 5e-6);
      // The last row alone (a decode step) equals the last row of the causal call, bit for bit.
      const one = hip.alloc('f32', [1, H * hd]);
      hip.attention(one, qh.rows(M - 1, 1), kh, vh, pos.subarray(M - 1), H, KVH, hd);
      expect(Buffer.from((hip.download(one) as Float32Array).buffer)).toEqual(
        Buffer.from(body.slice((M - 1) * H * hd).buffer),
      );
    });
  }

  /** Llama-3-8B heads over 205 keys, the last 3 rows as queries, on both backends. */
  function attentionInputs() {
    const [H, KVH, hd, keys, M] = [32, 8, 128, 205, 3];
    const [kh, ko] = pair([keys, KVH * hd], 'act');
    const [vh, vo] = pair([keys, KVH * hd], 'act');
    const [qh, qo] = pair([M, H * hd], 'act');
    const pos = Int32Array.from({ length: M }, (_, i) => keys - M + i);
    return { H, KVH, hd, M, kh, ko, vh, vo, qh, qo, pos };
  }

  it('attention options (the faults\' scale and key splits) against the oracle; decode row = causal row', () => {
    const { H, KVH, hd, M, kh, ko, vh, vo, qh, qo, pos } = attentionInputs();
    for (const opts of [{ scale: 0.25 }, { keyChunk: 16 }, { keyChunk: 32 }, { keyChunk: 64 }]) {
      const g = guarded(hip, M, H * hd);
      hip.attention(g.out, qh, kh, vh, pos, H, KVH, hd, opts);
      const ref = oracle.alloc('f64', [M, H * hd]);
      oracle.attention(ref, qo, ko, vo, pos, H, KVH, hd, opts.scale !== undefined ? opts : undefined);
      const body = checkGuards(g.buf, M, H * hd);
      compare(`attention ${JSON.stringify(opts)}`, body, oracle.download(ref) as Float64Array, 5e-6);
      const one = hip.alloc('f32', [1, H * hd]);
      hip.attention(one, qh.rows(M - 1, 1), kh, vh, pos.subarray(M - 1), H, KVH, hd, opts);
      expect(Buffer.from((hip.download(one) as Float32Array).buffer)).toEqual(Buffer.from(body.slice((M - 1) * H * hd).buffer));
    }
  });

  it('attentionProbe: pv is the fused row bit for bit (decode split and causal rows, every option); scores and probs against the oracle', () => {
    const { H, KVH, hd, M, kh, ko, vh, vo, qh, qo, pos } = attentionInputs();
    for (const opts of [undefined, { scale: 0.25 }, { keyChunk: 16 }, { keyChunk: 32 }]) {
      const all = hip.alloc('f32', [M, H * hd]);
      hip.attention(all, qh, kh, vh, pos, H, KVH, hd, opts);
      const one = hip.alloc('f32', [1, H * hd]);
      hip.attention(one, qh.rows(M - 1, 1), kh, vh, pos.subarray(M - 1), H, KVH, hd, opts);
      const rows = hip.download(all) as Float32Array;
      for (let r = 0; r < M; r++) {
        const n = pos[r]! + 1;
        const [sc, pr, pv] = [hip.alloc('f32', [H, n]), hip.alloc('f32', [H, n]), hip.alloc('f32', [H, hd])];
        hip.attentionProbe(sc, pr, pv, qh.rows(r, 1), kh, vh, pos[r]!, H, KVH, hd, opts);
        const got = Buffer.from((hip.download(pv) as Float32Array).buffer);
        expect(got, `row ${r} ${JSON.stringify(opts)}`).toEqual(Buffer.from(rows.slice(r * H * hd, (r + 1) * H * hd).buffer));
        if (r === M - 1) expect(got).toEqual(Buffer.from((hip.download(one) as Float32Array).buffer));
        const [so, po, vo2] = [oracle.alloc('f64', [H, n]), oracle.alloc('f64', [H, n]), oracle.alloc('f64', [H, hd])];
        oracle.attentionProbe(so, po, vo2, qo.rows(r, 1), ko, vo, pos[r]!, H, KVH, hd, opts?.scale !== undefined ? opts : undefined);
        compare(`probe scores row ${r} ${JSON.stringify(opts ?? {})}`, hip.download(sc) as Float32Array, oracle.download(so) as Float64Array, 5e-6);
        compare(`probe probs row ${r} ${JSON.stringify(opts ?? {})}`, hip.download(pr) as Float32Array, oracle.download(po) as Float64Array, 5e-6);
      }
    }
  });

  // Every block layout of both chains (hip/attention.hip, hip/attention_chain.hip): 1, 4 and 48 query
  // heads a KV head (48: more than a block's columns), head_dim 64 and 128 and one the matrix chain
  // does not take, more chunks than a group (18), positions spread over the cache (a block's
  // columns end in different chunks), and a V dim whose keys are zeros for the first half and
  // negative after (a zero sum's sign: decode's masked V rows are zeros, a prefill block's later keys).
  it('attention layouts: prefill rows = decode = probe pv, bit for bit, and the oracle, past a group of chunks', () => {
    const keys = 1100;
    for (const [H, KVH, hd] of [[32, 8, 128], [8, 1, 64], [4, 4, 64], [48, 1, 128], [8, 2, 48]] as const) {
      const kvw = KVH * hd;
      const [kh, ko] = pair([keys, kvw], 'act');
      const v = hip.alloc('f32', [keys, kvw]);
      hip.fillUniform(v, seed++, 1, 0);
      const vals = hip.download(v) as Float32Array;
      for (let j = 0; j < keys; j++) vals[j * kvw + 5] = j < keys / 2 ? 0 : -Math.abs(vals[j * kvw + 5]!) - 0.5;
      hip.upload(v, vals);
      const vo = oracle.alloc('f64', [keys, kvw]);
      oracle.upload(vo, Float64Array.from(vals));
      const M = 21;
      const pos = Int32Array.from({ length: M }, (_, i) => Math.round((i * (keys - 1)) / (M - 1)));
      pos[1] = keys / 2 - 1; // sums only the zeros of dim 5
      const [qh, qo] = pair([M, H * hd], 'act');
      const g = guarded(hip, M, H * hd);
      hip.attention(g.out, qh, kh, v, pos, H, KVH, hd);
      const rows = checkGuards(g.buf, M, H * hd);
      const ref = oracle.alloc('f64', [M, H * hd]);
      oracle.attention(ref, qo, ko, vo, pos, H, KVH, hd);
      compare(`attention H=${H} KVH=${KVH} hd=${hd} ${keys} keys`, rows, oracle.download(ref) as Float64Array, 5e-6);
      for (let r = 0; r < M; r++) {
        const row = Buffer.from(rows.slice(r * H * hd, (r + 1) * H * hd).buffer);
        const one = hip.alloc('f32', [1, H * hd]);
        hip.attention(one, qh.rows(r, 1), kh, v, pos.subarray(r, r + 1), H, KVH, hd);
        expect(Buffer.from((hip.download(one) as Float32Array).buffer), `decode row ${r} H=${H} KVH=${KVH} hd=${hd}`).toEqual(row);
        if (r % 5 !== 1) continue;
        const n = pos[r]! + 1;
        const [sc, pr, pv] = [hip.alloc('f32', [H, n]), hip.alloc('f32', [H, n]), hip.alloc('f32', [H, hd])];
        hip.attentionProbe(sc, pr, pv, qh.rows(r, 1), kh, v, pos[r]!, H, KVH, hd);
        expect(Buffer.from((hip.download(pv) as Float32Array).buffer), `probe row ${r} H=${H} KVH=${KVH} hd=${hd}`).toEqual(row);
        const [so, po, vo2] = [oracle.alloc('f64', [H, n]), oracle.alloc('f64', [H, n]), oracle.alloc('f64', [H, hd])];
        oracle.attentionProbe(so, po, vo2, qo.rows(r, 1), ko, vo, pos[r]!, H, KVH, hd);
        compare(`probe scores row ${r} H=${H} hd=${hd}`, hip.download(sc) as Float32Array, oracle.download(so) as Float64Array, 5e-6);
        compare(`probe probs row ${r} H=${H} hd=${hd}`, hip.download(pr) as Float32Array, oracle.download(po) as Float64Array, 5e-6);
      }
    }
  });

  // The tiled layout (hip/mma.h) on the way in and out: any row range, any dtype, K padded or not.
  it('matmul weights keep their rows through upload, fillUniform, download and row views', () => {
    const cpu = createBackend('cpu');
    for (const [N, K, wd] of [
      [40, 72, 'bf16'],
      [333, 1000, 'f16'],
      [37, 64, 'f32'],
      [24, 13, 'bf16'],
    ] as const) {
      const w = hip.alloc(wd, [N, K], { matmul: true });
      hip.fillUniform(w, 11n, 1, 0);
      const ref = cpu.alloc(wd, [N, K]);
      cpu.fillUniform(ref, 11n, 1, 0);
      const want = cpu.download(ref);
      expect(Buffer.from(hip.download(w).buffer).equals(Buffer.from(want.buffer)), `fill ${wd} [${N},${K}]`).toBe(true);
      // Rows 5 .. 5 + 11 (not a tile's first) replaced by an upload in two chunks, then read through a view.
      const rows = want.constructor === Float32Array ? new Float32Array(11 * K) : new Uint16Array(11 * K);
      rows.forEach((_, i) => (rows[i] = wd === 'f32' ? i - 7 : 0x3c00 + (i % 97)));
      const view = w.rows(5, 11);
      const bytes = rows.BYTES_PER_ELEMENT * K;
      hip.upload(view, new Uint8Array(rows.buffer, 0, 4 * bytes), 0);
      hip.upload(view, new Uint8Array(rows.buffer, 4 * bytes), 4 * bytes);
      expect(Buffer.from(hip.download(view).buffer).equals(Buffer.from(rows.buffer)), `view ${wd}`).toBe(true);
      const all = hip.download(w);
      const expected = want.slice();
      expected.set(rows, 5 * K);
      expect(Buffer.from(all.buffer).equals(Buffer.from(expected.buffer)), `neighbours kept ${wd}`).toBe(true);
      // A view filled alone counts its elements from its own first row.
      hip.fillUniform(w.rows(16, N - 16), 12n, 1, 0);
      const part = cpu.alloc(wd, [N - 16, K]);
      cpu.fillUniform(part, 12n, 1, 0);
      expect(Buffer.from(hip.download(w.rows(16, N - 16)).buffer).equals(Buffer.from(cpu.download(part).buffer))).toBe(true);
      if (hip.name === 'hip' && K % 8 === 0) {
        expect(() => hip.upload(w, new Uint8Array(bytes + 2), 0)).toThrow(/not whole rows/);
        const x = hip.alloc('f32', [1, K]);
        expect(() => hip.matmul(hip.alloc('f32', [1, 11]), x, w.rows(5, 11))).toThrow(/row view from row 5 of a tiled weight/);
        expect(() => hip.matmul(hip.alloc('f32', [1, N]), x, hip.alloc(wd, [N, K]))).toThrow(/is row-major.*matmul: true/);
        expect(() => hip.add(x, x, w.rows(0, 1))).toThrow(/argument 2 .* is a matmul weight/);
        expect(() => w.reshape(1, K)).toThrow(/matmul weight/);
      }
    }
    expect(() => hip.alloc('bf16', [64], { matmul: true })).toThrow(/allowed: 2-D f32, f16 or bf16/);
  });

  it('matmulVariant gives the CPU backend bits (both are defined step by step)', () => {
    const cpu = createBackend('cpu');
    for (const wd of ['f32', 'f16', 'bf16'] as const) {
      for (const variant of ['reverse_k', 'f16_accumulate'] as const) {
        const [M, K, N] = [2, 4096, 64];
        const [xh] = pair([M, K], 'act');
        const [wh] = pair([N, K], wd, Math.sqrt(3 / K), 0, true);
        const xc = cpu.alloc('f32', [M, K]);
        cpu.upload(xc, hip.download(xh) as Float32Array);
        const wc = cpu.alloc(wd, [N, K]);
        cpu.upload(wc, hip.download(wh) as Float32Array | Uint16Array);
        const [oh, oc] = [hip.alloc('f32', [M, N]), cpu.alloc('f32', [M, N])];
        hip.matmulVariant(oh, xh, wh, variant);
        cpu.matmulVariant(oc, xc, wc, variant);
        expect(Buffer.from(hip.download(oh).buffer), `${variant} ${wd}`).toEqual(Buffer.from(cpu.download(oc).buffer));
      }
    }
  });

  it('topk and summarize agree with the host', () => {
    const [xh, xo] = pair([3, 128256], 'act');
    const v = hip.download(xh) as Float32Array;
    v[5] = NaN;
    v[7] = v[9] = 10; // a tie: the lower index first
    hip.upload(xh, v);
    oracle.upload(xo, Float64Array.from(v));
    const a = hip.topk(xh, 8);
    const b = oracle.topk(xo, 8);
    expect([...a.ids]).toEqual([...b.ids]);
    expect([...a.values]).toEqual([...b.values]);
    expect(a.ids[0]).toBe(7);
    // One row's top-1 (a decode step's: on hip, 128 slices of 1002 and their merge): a tie within a slice, a
    // tie across two (1001 ends slice 0, 1002 starts slice 1), the best alone in the last slice.
    for (const tied of [[7, 9], [1001, 1002], [128254, 128255], [128255]]) {
      const row = v.slice(0, 128256);
      for (const at of tied) row[at] = 20;
      const [rh, ro] = [hip.alloc('f32', [1, 128256]), oracle.alloc('f64', [1, 128256])];
      hip.upload(rh, row);
      oracle.upload(ro, Float64Array.from(row));
      const [t1, t2] = [hip.topk(rh, 1), oracle.topk(ro, 1)];
      expect([...t1.ids], `top-1 of ${tied.join(', ')}`).toEqual([...t2.ids]);
      expect([...t1.values]).toEqual([...t2.values]);
      expect(t1.ids[0]).toBe(tied[0]);
    }

    const sample = [0, 5, 100, 128255];
    const s = hip.summarize(xh, 0, sample);
    const cpu = createBackend('cpu');
    const xc = cpu.alloc('f32', [3, 128256]);
    cpu.upload(xc, v);
    const c = cpu.summarize(xc, 0, sample);
    expect(s.hash).toBe(c.hash);
    expect(s.nan).toBe(1);
    expect([...s.sample]).toEqual([...c.sample]);
    for (const k of ['mean', 'abs_mean', 'rms', 'min', 'max'] as const) expect(s[k]).toBeCloseTo(c[k], 10);

    // The tracer's pass: spans of a flat buffer (rows 0 and 2, and a piece of row 1), hashes exact.
    const flat = hip.alloc('f32', [3 * 128256, 1]);
    hip.copy(flat, xh);
    const spans = Int32Array.of(0, 128256, 2 * 128256, 128256, 128256 + 17, 4096);
    const stats = (be: typeof hip, x: typeof flat) => {
      const out = be.alloc('f64', [3, SPAN_STATS]);
      be.summarizeSpans(out, x, spans);
      const host = be.hostBuffer(3 * SPAN_STATS * 8);
      be.copyToHost(out, host);
      be.fence().wait();
      out.free();
      return [0, 1, 2].map((i) => readSpanStats(host, 0, i));
    };
    const hs = stats(hip, flat);
    const flatC = cpu.alloc('f32', [3 * 128256, 1]);
    cpu.upload(flatC, v);
    const want = stats(cpu, flatC);
    for (let i = 0; i < 3; i++) {
      expect(hs[i]!.hash).toBe(want[i]!.hash);
      expect([hs[i]!.nan, hs[i]!.inf]).toEqual([want[i]!.nan, want[i]!.inf]);
      for (const k of ['mean', 'abs_mean', 'rms', 'min', 'max'] as const) expect(hs[i]![k]).toBeCloseTo(want[i]![k], 10);
    }
    expect(hs[0]!.hash).toBe(s.hash);
    flat.free();
  });

  it('fill_uniform gives the CPU backend bits', () => {
    const cpu = createBackend('cpu');
    for (const dt of ['f32', 'f16', 'bf16'] as const) {
      const h = hip.alloc(dt, [1001]);
      const c = cpu.alloc(dt, [1001]);
      hip.fillUniform(h, 77n, 0.5, 0.25);
      cpu.fillUniform(c, 77n, 0.5, 0.25);
      expect(Buffer.from(hip.download(h).buffer)).toEqual(Buffer.from(cpu.download(c).buffer));
    }
  });

  // Device memory errors; the cpu backend's host allocations are not this path.
  it.skipIf(hip.name !== 'hip')('errors are JS exceptions with the HIP error name, not aborts', () => {
    // Twice the free memory, as [rows, 2^20] f32.
    const rows = Math.ceil((hip.memInfo().free * 2) / 4 / 2 ** 20);
    let err: (Error & { code?: string }) | undefined;
    try {
      hip.alloc('f32', [rows, 2 ** 20]);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('ENOMEM');
    expect(err?.message).toMatch(/^alloc f32\[\d+,1048576\] \(\d+ bytes, \d+ free of \d+\): \w*(OutOfMemory|MemoryAllocation)/);
    // The backend still works after the failure.
    const t = hip.alloc('f32', [4]);
    hip.fillUniform(t, 1n, 1, 0);
    expect((hip.download(t) as Float32Array).length).toBe(4);
  });
});
