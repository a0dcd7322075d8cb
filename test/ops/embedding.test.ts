// embedding: out[m, :] = table[ids[m], :]
import { describe, expect, it } from 'vitest';

import { KINDS, WEIGHT_DTYPES, backend, downloadAct, expectError, expectRelL2, uploadWeight } from './helpers.js';
import { Rng } from './random.js';
import {
  bf16ToNumber,
  f16ToNumber,
  numberToBf16Bits,
  numberToF16Bits,
  refEmbedding,
  roundToBf16,
  roundToF16,
} from './reference.js';

// Bound: 0. A lookup does no arithmetic, and every f32/f16/bf16 table value
// is exactly representable in f32 and f64, so the output must equal the
// decoded table rows exactly on both backends (checked as relative L2 = 0 and
// element by element).

const D_VALUES = [1, 7, 8, 9, 63, 130, 257];
const VOCAB = 50;

describe.each(KINDS)('embedding on %s', (kind) => {
  const b = backend(kind);

  for (const wd of WEIGHT_DTYPES) {
    for (const D of D_VALUES) {
      for (const M of [1, 6]) {
        it(`copies rows exactly: table ${wd}, M=${M} D=${D}`, () => {
          const rng = new Rng(500 * D + M + 7 * WEIGHT_DTYPES.indexOf(wd));
          const table = uploadWeight(b, wd, [VOCAB, D], rng.normals(VOCAB * D));
          // First and last id, plus random ones (repeats allowed).
          const ids = M === 1 ? Int32Array.of(VOCAB - 1) : Int32Array.of(0, VOCAB - 1, ...rng.ints(M - 2, VOCAB));
          const out = b.alloc(b.actDtype, [M, D]);
          b.embedding(out, table.t, ids);
          const got = downloadAct(b, out);
          const ref = refEmbedding(table.values, D, ids);
          expectRelL2(got, ref, Number.MIN_VALUE, `embedding ${kind} ${wd} M=${M} D=${D}`);
          expect(Array.from(got)).toEqual(Array.from(ref));
        });
      }
    }
  }

  // Every one of the 65536 f16 / bf16 bit patterns, decoded by the backend
  // (into its activation dtype) and by the TS decoders: identical values,
  // including subnormals, signed zeros, infinities and NaNs.
  for (const wd of ['f16', 'bf16'] as const) {
    it(`decodes all 65536 ${wd} bit patterns exactly`, () => {
      const table = b.alloc(wd, [256, 256]);
      const bits = new Uint16Array(65536);
      for (let i = 0; i < 65536; i++) bits[i] = i;
      b.upload(table, bits);
      const ids = new Int32Array(256);
      for (let i = 0; i < 256; i++) ids[i] = i;
      const out = b.alloc(b.actDtype, [256, 256]);
      b.embedding(out, table, ids);
      const got = downloadAct(b, out);
      const decode = wd === 'f16' ? f16ToNumber : bf16ToNumber;
      let mismatches = 0;
      for (let i = 0; i < 65536; i++) {
        const want = decode(i);
        const ok = Number.isNaN(want) ? Number.isNaN(got[i]!) : Object.is(got[i], want);
        if (!ok) mismatches++;
      }
      expect(mismatches).toBe(0);
    });
  }

  describe('errors', () => {
    it('rejects a token id outside the vocabulary', () => {
      const table = b.alloc('f32', [VOCAB, 4]);
      const out = b.alloc(b.actDtype, [2, 4]);
      expectError(
        () => b.embedding(out, table, Int32Array.of(3, VOCAB)),
        'EINVAL',
        /embedding: token id 50 at row 1 is outside the vocabulary \[0, 50\)/,
      );
      expectError(() => b.embedding(out, table, Int32Array.of(-1, 0)), 'EINVAL', /token id -1 at row 0 is outside the vocabulary/);
    });

    it('rejects a count of ids different from the output rows', () => {
      const table = b.alloc('f32', [VOCAB, 4]);
      const out = b.alloc(b.actDtype, [2, 4]);
      expectError(() => b.embedding(out, table, Int32Array.of(1, 2, 3)), 'EINVAL', /embedding: got 3 ids for 2 rows/);
    });

    it('rejects ids that are not an Int32Array', () => {
      const table = b.alloc('f32', [VOCAB, 4]);
      const out = b.alloc(b.actDtype, [2, 4]);
      const bad = Float64Array.of(1, 2) as unknown as Int32Array;
      expectError(() => b.embedding(out, table, bad), 'EINVAL', /must be an Int32Array/);
    });

    it('rejects a width mismatch between out and table', () => {
      const table = b.alloc('bf16', [VOCAB, 4]);
      const out = b.alloc(b.actDtype, [2, 5]);
      expectError(() => b.embedding(out, table, Int32Array.of(1, 2)), 'EINVAL', /embedding: .* differ in width/);
    });
  });
});

// The reference's own f16/bf16 codecs, which the weight tests rely on: the
// encoders invert the decoders on every non-NaN bit pattern, and round to
// nearest even between neighbours (ties, overflow, subnormals).
describe('reference f16/bf16 codecs', () => {
  it('encode(decode(h)) === h for every non-NaN pattern', () => {
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const f = f16ToNumber(h);
      if (!Number.isNaN(f) && numberToF16Bits(f) !== h) bad++;
      const g = bf16ToNumber(h);
      if (!Number.isNaN(g) && numberToBf16Bits(g) !== h) bad++;
    }
    expect(bad).toBe(0);
  });

  it('rounds to nearest, ties to even', () => {
    // f16 around 1: ulp 2^-10.
    expect(roundToF16(1 + 2 ** -11)).toBe(1); // tie -> even (1)
    expect(roundToF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // tie -> even (1 + 2 ulp)
    expect(roundToF16(1 + 2 ** -11 + 2 ** -30)).toBe(1 + 2 ** -10);
    expect(roundToF16(65519.99)).toBe(65504);
    expect(roundToF16(65520)).toBe(Infinity);
    expect(roundToF16(-(2 ** -25))).toBe(-0); // tie between 0 and the smallest subnormal
    expect(roundToF16(1.5 * 2 ** -24)).toBe(2 ** -23); // subnormal tie -> even
    expect(numberToF16Bits(2 ** -24)).toBe(0x0001);
    expect(numberToF16Bits(-2)).toBe(0xc000);
    // bf16 around 1: ulp 2^-7.
    expect(roundToBf16(1 + 2 ** -8)).toBe(1);
    expect(roundToBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
    expect(numberToBf16Bits(1)).toBe(0x3f80);
    expect(numberToBf16Bits(-Infinity)).toBe(0xff80);
  });
});
