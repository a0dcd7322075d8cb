// attention: query row m, head h attends to cache rows 0..pos[m] of kv head
// h / (n_heads / n_kv_heads), scores scaled by 1/sqrt(head_dim), softmax,
// weighted sum of v. Prefill (causal) and decode are the same op.
import { describe, expect, it } from 'vitest';

import { KINDS, backend, bitsEqual, downloadAct, downloadRaw, expectError, expectRelL2, uploadAct } from './helpers.js';
import { Rng } from './random.js';
import { refAttention } from './reference.js';

// Relative L2 bounds against the FP64 reference (u = 2^-24 on cpu).
// cpu: each score is a head_dim-term f32 dot product (<= 64/8 + 3 = 11
// roundings) times the scale; exp turns a score's absolute error into a
// relative error of its weight, and scores here reach |s| ~ 5-10, so a weight
// can carry ~10 * 11u ~ 7e-6 in the worst case (a few e-7 typically). The
// output sums up to 40 weighted, random-signed v rows sequentially (up to 40u
// relative to sum |p v|), and that sum cancels (|out| ~ |v| / sqrt(keys)),
// magnifying relative errors by up to ~6. Worst case ~1e-5, typical a few
// e-7; observed <= 2.4e-7. Bound 1e-5.
// cpu-fp64: the same chain in f64 (u = 2^-53); observed <= 1.4e-15, bound 1e-13.
const BOUND = { cpu: 1e-5, 'cpu-fp64': 1e-13 } as const;

const HEADS: [number, number][] = [
  [4, 2],
  [8, 1],
  [2, 2],
];
const HEAD_DIMS = [16, 64];
const CAPACITY = 40;

/** Query positions of each scenario: causal prefill, decode, and a prefill chunk after a prefix. */
const SCENARIOS: { name: string; pos: number[] }[] = [
  { name: 'prefill of 13 rows from 0', pos: Array.from({ length: 13 }, (_, i) => i) },
  { name: 'decode at position 29', pos: [29] },
  { name: 'chunk of 6 rows at 20..25', pos: [20, 21, 22, 23, 24, 25] },
  { name: 'decode at the last slot', pos: [CAPACITY - 1] },
];

interface Setup {
  q: ReturnType<typeof uploadAct>;
  k: ReturnType<typeof uploadAct>;
  v: ReturnType<typeof uploadAct>;
  qs: Float64Array;
}

function setup(b: ReturnType<typeof backend>, seed: number, M: number, nHeads: number, nKv: number, hd: number): Setup {
  const rng = new Rng(seed);
  // q scaled by 2 so some softmax rows are peaked; the whole cache, rows past
  // every query's position included, holds random data that must be ignored.
  const qs = rng.normals(M * nHeads * hd, 2);
  return {
    q: uploadAct(b, [M, nHeads * hd], qs),
    k: uploadAct(b, [CAPACITY, nKv * hd], rng.normals(CAPACITY * nKv * hd)),
    v: uploadAct(b, [CAPACITY, nKv * hd], rng.normals(CAPACITY * nKv * hd)),
    qs,
  };
}

describe.each(KINDS)('attention on %s', (kind) => {
  const b = backend(kind);

  for (const [nHeads, nKv] of HEADS) {
    for (const hd of HEAD_DIMS) {
      for (const sc of SCENARIOS) {
        it(`matches the FP64 reference: ${nHeads}/${nKv} heads, head_dim ${hd}, ${sc.name}`, () => {
          const M = sc.pos.length;
          const { q, k, v } = setup(b, nHeads * 100 + nKv * 10 + hd + M, M, nHeads, nKv, hd);
          const pos = Int32Array.from(sc.pos);
          const out = b.alloc(b.actDtype, [M, nHeads * hd]);
          b.attention(out, q.t, k.t, v.t, pos, nHeads, nKv, hd);
          const ref = refAttention(q.values, M, k.values, v.values, pos, nHeads, nKv, hd);
          expectRelL2(downloadAct(b, out), ref, BOUND[kind], `attention ${kind} ${nHeads}/${nKv} hd=${hd} ${sc.name}`);
        });
      }
    }
  }

  it('at position 0 each head returns v[0] of its kv head exactly (GQA head mapping)', () => {
    const nHeads = 8;
    const nKv = 2;
    const hd = 16;
    const { q, k, v } = setup(b, 9, 1, nHeads, nKv, hd);
    const out = b.alloc(b.actDtype, [1, nHeads * hd]);
    b.attention(out, q.t, k.t, v.t, Int32Array.of(0), nHeads, nKv, hd);
    const got = downloadAct(b, out);
    for (let h = 0; h < nHeads; h++) {
      const kvHead = Math.floor(h / (nHeads / nKv)); // heads 0-3 -> kv 0, heads 4-7 -> kv 1
      expect(Array.from(got.subarray(h * hd, (h + 1) * hd))).toEqual(Array.from(v.values.subarray(kvHead * hd, (kvHead + 1) * hd)));
    }
  });

  it('ignores cache rows after the query position (causal mask)', () => {
    const nHeads = 4;
    const nKv = 2;
    const hd = 16;
    const pos = Int32Array.of(3, 10, 17);
    const a = setup(b, 11, 3, nHeads, nKv, hd);
    const out1 = b.alloc(b.actDtype, [3, nHeads * hd]);
    b.attention(out1, a.q.t, a.k.t, a.v.t, pos, nHeads, nKv, hd);
    // Overwrite every row after position 17 with large values.
    const width = nKv * hd;
    const k2 = Float64Array.from(a.k.values);
    const v2 = Float64Array.from(a.v.values);
    for (let i = 18 * width; i < CAPACITY * width; i++) {
      k2[i] = 100;
      v2[i] = -1e6;
    }
    const k = uploadAct(b, [CAPACITY, width], k2);
    const v = uploadAct(b, [CAPACITY, width], v2);
    const out2 = b.alloc(b.actDtype, [3, nHeads * hd]);
    b.attention(out2, a.q.t, k.t, v.t, pos, nHeads, nKv, hd);
    expect(bitsEqual(downloadRaw(b, out1), downloadRaw(b, out2))).toBe(true);
  });

  // Batch invariance: a query row at position p in a multi-row causal call is
  // bit-identical to the same query computed alone over the same cache. The
  // largest 13-row call (8 heads x 64) is split over threads; single rows never are.
  describe('batch invariance', () => {
    for (const [nHeads, nKv] of HEADS) {
      for (const hd of HEAD_DIMS) {
        it(`row at position p of a 13-row prefill equals the query alone: ${nHeads}/${nKv}, head_dim ${hd}`, () => {
          const M = 13;
          const p0 = 7;
          const pos = Int32Array.from({ length: M }, (_, i) => p0 + i);
          const { q, k, v, qs } = setup(b, 4242 + nHeads + hd, M, nHeads, nKv, hd);
          const width = nHeads * hd;
          const out = b.alloc(b.actDtype, [M, width]);
          b.attention(out, q.t, k.t, v.t, pos, nHeads, nKv, hd);
          const all = downloadRaw(b, out);
          for (let r = 0; r < M; r++) {
            const qr = uploadAct(b, [1, width], qs.subarray(r * width, (r + 1) * width));
            const o1 = b.alloc(b.actDtype, [1, width]);
            b.attention(o1, qr.t, k.t, v.t, pos.subarray(r, r + 1), nHeads, nKv, hd);
            expect(bitsEqual(downloadRaw(b, o1), all.subarray(r * width, (r + 1) * width))).toBe(true);
          }
        });
      }
    }
  });

  describe('errors', () => {
    const q = () => b.alloc(b.actDtype, [2, 4 * 16]);
    const kv = () => b.alloc(b.actDtype, [8, 2 * 16]);

    it('rejects a position outside the KV cache', () => {
      const out = q();
      expectError(
        () => b.attention(out, q(), kv(), kv(), Int32Array.of(7, 8), 4, 2, 16),
        'EINVAL',
        /attention: position 8 at row 1 is outside the KV cache \[0, 8\)/,
      );
    });

    it('rejects n_heads that is not a multiple of n_kv_heads', () => {
      const qq = b.alloc(b.actDtype, [2, 3 * 16]);
      expectError(
        () => b.attention(b.alloc(b.actDtype, [2, 3 * 16]), qq, kv(), kv(), Int32Array.of(0, 1), 3, 2, 16),
        'EINVAL',
        /attention: n_heads 3 must be a positive multiple of n_kv_heads 2/,
      );
    });

    it('rejects q and caches that do not match the head layout', () => {
      expectError(() => b.attention(q(), q(), kv(), kv(), Int32Array.of(0, 1), 4, 2, 8), 'EINVAL', /attention: q .* is not n_heads x head_dim/);
      expectError(
        () => b.attention(q(), q(), kv(), b.alloc(b.actDtype, [9, 32]), Int32Array.of(0, 1), 4, 2, 16),
        'EINVAL',
        /attention: k_cache .* and v_cache .* differ in shape/,
      );
    });

    it('rejects a position count different from the query rows', () => {
      expectError(() => b.attention(q(), q(), kv(), kv(), Int32Array.of(0), 4, 2, 16), 'EINVAL', /attention: got 1 positions for 2 rows/);
    });
  });
});

// The options planted faults use: another score scale, another key split.
describe.each(KINDS)('attention options on %s', (kind) => {
  const b = backend(kind);
  const [nHeads, nKv, hd] = [4, 2, 16];

  it('scale multiplies every q.k instead of 1/sqrt(head_dim)', () => {
    const { q, k, v } = setup(b, 4242, 1, nHeads, nKv, hd);
    const pos = Int32Array.of(33);
    const out = b.alloc(b.actDtype, [1, nHeads * hd]);
    b.attention(out, q.t, k.t, v.t, pos, nHeads, nKv, hd, { scale: 0.5 });
    const ref = refAttention(q.values, 1, k.values, v.values, pos, nHeads, nKv, hd, 0.5);
    expectRelL2(downloadAct(b, out), ref, BOUND[kind], `attention ${kind} scale 0.5`);
    const dflt = b.alloc(b.actDtype, [1, nHeads * hd]);
    b.attention(dflt, q.t, k.t, v.t, pos, nHeads, nKv, hd, { scale: 1 / Math.sqrt(hd) });
    const plain = b.alloc(b.actDtype, [1, nHeads * hd]);
    b.attention(plain, q.t, k.t, v.t, pos, nHeads, nKv, hd);
    // 1/sqrt(16) is exact, so the explicit scale is the default's bits.
    expect(bitsEqual(downloadRaw(b, dflt), downloadRaw(b, plain))).toBe(true);
  });

  // 64 is HIP's own split; on cpu it is a split like the others, over more keys than this cache has.
  for (const chunk of [16, 32]) {
    it(`keyChunk ${chunk} matches the reference and changes bits only past one chunk`, () => {
      const { q, k, v } = setup(b, 777 + chunk, 2, nHeads, nKv, hd);
      const pos = Int32Array.of(chunk - 1, 37);
      const out = b.alloc(b.actDtype, [2, nHeads * hd]);
      b.attention(out, q.t, k.t, v.t, pos, nHeads, nKv, hd, { keyChunk: chunk });
      const ref = refAttention(q.values, 2, k.values, v.values, pos, nHeads, nKv, hd);
      expectRelL2(downloadAct(b, out), ref, BOUND[kind], `attention ${kind} keyChunk ${chunk}`);
      const plain = b.alloc(b.actDtype, [2, nHeads * hd]);
      b.attention(plain, q.t, k.t, v.t, pos, nHeads, nKv, hd);
      const [a, p] = [downloadRaw(b, out), downloadRaw(b, plain)];
      // A row within one chunk is the plain order's arithmetic; 38 keys in chunks is not.
      expect(bitsEqual(a.subarray(0, nHeads * hd), p.subarray(0, nHeads * hd))).toBe(true);
      expect(bitsEqual(a.subarray(nHeads * hd), p.subarray(nHeads * hd))).toBe(false);
    });
  }

  it('refuses a key chunk it does not have', () => {
    const { q, k, v } = setup(b, 1, 1, nHeads, nKv, hd);
    const out = b.alloc(b.actDtype, [1, nHeads * hd]);
    expectError(
      () => b.attention(out, q.t, k.t, v.t, Int32Array.of(3), nHeads, nKv, hd, { keyChunk: 24 }),
      'EINVAL',
      /attention: keyChunk 24 is not supported \(allowed: 0, 16, 32, 64\)/,
    );
  });
});

// attentionProbe: the attention of one row with the op's own order, exposing
// scores, probs and pv; its pv must be the fused op's row, bit for bit.
describe.each(KINDS)('attentionProbe on %s', (kind) => {
  const b = backend(kind);
  const [nHeads, nKv, hd] = [4, 2, 16];

  for (const opts of [undefined, { keyChunk: 16 }, { scale: 0.5, keyChunk: 32 }]) {
    it(`pv equals attention's row bit for bit; scores and probs match the reference (${JSON.stringify(opts ?? {})})`, () => {
      const { q, k, v } = setup(b, 9090, 3, nHeads, nKv, hd);
      const pos = Int32Array.of(11, 36, 39);
      const out = b.alloc(b.actDtype, [3, nHeads * hd]);
      b.attention(out, q.t, k.t, v.t, pos, nHeads, nKv, hd, opts);
      const fused = downloadRaw(b, out);
      for (let r = 0; r < 3; r++) {
        const keys = pos[r]! + 1;
        const [scores, probs, pv] = [b.alloc(b.actDtype, [nHeads, keys]), b.alloc(b.actDtype, [nHeads, keys]), b.alloc(b.actDtype, [nHeads, hd])];
        b.attentionProbe(scores, probs, pv, q.t.rows(r, 1), k.t, v.t, pos[r]!, nHeads, nKv, hd, opts);
        expect(bitsEqual(downloadRaw(b, pv), fused.subarray(r * nHeads * hd, (r + 1) * nHeads * hd))).toBe(true);
        // The reference: scaled q.k per head and key, and their softmax.
        const scale = opts?.scale ?? 1 / Math.sqrt(hd);
        const refS: number[] = [];
        const refP: number[] = [];
        for (let h = 0; h < nHeads; h++) {
          const g = Math.floor(h / (nHeads / nKv));
          const s = Array.from({ length: keys }, (_, j) => {
            let d = 0;
            for (let i = 0; i < hd; i++) d += q.values[r * nHeads * hd + h * hd + i]! * k.values[j * nKv * hd + g * hd + i]!;
            return d * scale;
          });
          const mx = Math.max(...s);
          const e = s.map((x) => Math.exp(x - mx));
          const sum = e.reduce((a, c) => a + c, 0);
          refS.push(...s);
          refP.push(...e.map((x) => x / sum));
        }
        expectRelL2(downloadAct(b, scores), refS, BOUND[kind], `scores ${kind}`);
        expectRelL2(downloadAct(b, probs), refP, BOUND[kind], `probs ${kind}`);
      }
    });
  }

  it('refuses scores of the wrong shape', () => {
    const { q, k, v } = setup(b, 1, 1, nHeads, nKv, hd);
    const bad = b.alloc(b.actDtype, [nHeads, 5]);
    const pv = b.alloc(b.actDtype, [nHeads, hd]);
    expectError(
      () => b.attentionProbe(bad, bad, pv, q.t, k.t, v.t, 6, nHeads, nKv, hd),
      'EINVAL',
      /attentionProbe: scores and probs must be \[4,7\], got f(32|64)\[4,5\]/,
    );
  });
});
