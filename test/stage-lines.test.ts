// Stage records' lines are formatted in native code on the writer's thread
// (native/stage_lines.h): each must be the very text JSON.stringify makes of
// the record, so readers of the file see no difference. This writes batches
// whose statistics and rows hold every kind of double (random bit patterns,
// subnormals, the thresholds of fixed and exponent notation, -0, NaN, the
// infinities) and compares each line with JSON.stringify of the record built
// in TypeScript.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SPAN_STATS } from '../src/native.js';
import { toJsonNumber } from '../src/trace/schema.js';
import { TraceWriter } from '../src/trace/writer.js';

const dir = mkdtempSync(join(tmpdir(), 'greta-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The trace's sample rule: 16 evenly spaced indices, or all of a short row. */
function sampleIndices(n: number, count = 16): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor((i * n) / count));
}

/** Doubles of every kind: random bits (all exponents), and the values where formatting changes. */
function edgeDoubles(count: number, seed: number): number[] {
  let s = BigInt(seed);
  const bits = new BigUint64Array(1);
  const f = new Float64Array(bits.buffer);
  const next = () => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    return s;
  };
  const fixed = [
    0, -0, 1, -1, 0.1, 0.2 + 0.1, 1 / 3, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    1e-7, 1e-6, 9.999999999999999e-7, 1.0000000000000002e-6, 1e-5, 123e-9, 1e20, 1e21, 9.999999999999999e20,
    1.0000000000000001e21, 123456789012345680000, 1234567890123456800000, 1e100, 1.5e-300, 4294967296, 2 ** 53,
    2 ** 53 + 2, -(2 ** 63), 0.5, 100, 1e15, 1e16, 1e17, 12.5, -0.000001234, NaN, Infinity, -Infinity,
  ];
  const out = [...fixed, ...fixed.map((v) => Math.fround(v))];
  while (out.length < count) {
    const r = next();
    bits[0] = r;
    const v = f[0]!;
    out.push(v, Math.fround(v), Number(r >> 40n) / 2 ** 24 - 0.5, (Number(r >> 11n) / 2 ** 53) * 10 ** (Number(r % 40n) - 20));
  }
  return out.slice(0, count);
}

describe('stage lines formatted natively', () => {
  for (const elemBytes of [8, 4] as const) {
    it(`equal JSON.stringify of the record, ${elemBytes === 8 ? 'f64' : 'f32'} rows`, () => {
      const widths = [1, 5, 16, 17, 1000, 4096, 33, 128256];
      const n = 240;
      const w = (r: number) => widths[r % widths.length]!;
      const at: number[] = [];
      let used = 0;
      for (let r = 0; r < n; r++) {
        at.push(used);
        used += w(r);
      }
      const statsAt = Math.ceil((used * elemBytes) / 8) * 8;
      const host = new ArrayBuffer(statsAt + n * SPAN_STATS * 8);
      const rows = elemBytes === 8 ? new Float64Array(host, 0, used) : new Float32Array(host, 0, used);
      const values = edgeDoubles(used, 7);
      rows.set(values);
      const stats = new Float64Array(host, statsAt, n * SPAN_STATS);
      const hashes = new BigUint64Array(host, statsAt, n * SPAN_STATS);
      const sv = edgeDoubles(n * (SPAN_STATS - 1), 11);
      for (let r = 0; r < n; r++) {
        for (let i = 0; i < SPAN_STATS - 1; i++) stats[r * SPAN_STATS + i] = sv[r * (SPAN_STATS - 1) + i]!;
        hashes[r * SPAN_STATS + SPAN_STATS - 1] = (BigInt(r) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
      }
      const path = join(dir, `lines-${elemBytes}.jsonl`);
      const writer = new TraceWriter(path);
      const ref = writer.writeRow(rows);
      const heads: string[] = [];
      const tails: string[] = [];
      const expected: string[] = [];
      for (let r = 0; r < n; r++) {
        const position = { run_id: 'r"1\\é', prompt: 'p4_sys', exp: 'E1', phase: 'decode0', token_id: r, token_index: 0, pos_id: 290, seq_len: 291 };
        const head = r % 3 === 0 ? { head: r % 32 } : {};
        const layer = r % 7 === 0 ? null : r % 32;
        const point = r % 5 === 0 ? 'logits' : 'x_out';
        const topk = point === 'logits' ? { ids: [3, 1], values: [toJsonNumber(values[r]!), -0] } : undefined;
        const s = (i: number) => stats[r * SPAN_STATS + i]!;
        const indices = sampleIndices(w(r));
        const record = {
          type: 'stage',
          ...position,
          layer,
          point,
          ...head,
          shape: [1, w(r)],
          dtype: elemBytes === 8 ? 'f64' : 'f32',
          stats: { mean: s(0), abs_mean: s(1), rms: s(2), min: s(3), max: s(4), nan: s(5), inf: s(6) },
          hash: hashes[r * SPAN_STATS + SPAN_STATS - 1]!.toString(16).padStart(16, '0'),
          sample: { indices, values: indices.map((k) => toJsonNumber(rows[at[r]! + k]!)) },
          row: { file: ref.file, offset: ref.offset + at[r]! * elemBytes, bytes: w(r) * elemBytes },
          ...(topk ? { topk } : {}),
        };
        expected.push(JSON.stringify(record));
        const text = JSON.stringify(record);
        heads.push(text.slice(0, text.indexOf('"stats":')));
        tails.push(topk ? `,"topk":${JSON.stringify(topk)}` : '');
      }
      writer.writeStageLines(heads, tails, host, statsAt, Int32Array.from(at.flatMap((a, r) => [a, w(r)])), elemBytes, ref);
      writer.close();
      const lines = readFileSync(path, 'utf8').split('\n');
      expect(lines.pop()).toBe('');
      expect(lines.length).toBe(n);
      for (let r = 0; r < n; r++) expect(lines[r], `record ${r}`).toBe(expected[r]);
    });
  }

  it('a batch that does not fit its host buffer is one EINVAL, and nothing is written', () => {
    const path = join(dir, 'bad.jsonl');
    const writer = new TraceWriter(path);
    const host = new ArrayBuffer(64 + SPAN_STATS * 8);
    const ref = { file: 'x.rows.bin', offset: 0 };
    expect(() => writer.writeStageLines(['{'], [''], host, 64, Int32Array.of(10, 16), 4, ref)).toThrow(
      /writeStageLines: record 0's row does not fit the host buffer before the statistics/,
    );
    expect(() => writer.writeStageLines(['{'], [''], host, 128, Int32Array.of(0, 16), 4, ref)).toThrow(
      /statistics at byte 128 do not fit the host buffer/,
    );
    writer.close();
    expect(readFileSync(path, 'utf8')).toBe('');
  });
});
