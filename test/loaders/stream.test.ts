// WeightStreamer: tensors arrive whole and in order whatever the chunking,
// conversion stages see whole row groups, and a file that is too short is a
// LoaderError. Small chunk sizes force many chunks on tiny tensors.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { dequantizeQ8_0 } from '../../src/loaders/gguf.js';
import { unpermuteRows } from '../../src/model/source.js';
import { WeightStreamer, type RowStage } from '../../src/model/stream.js';
import { createBackend } from '../../src/native.js';
import { numberToF16Bits } from '../ops/reference.js';
import { expectLoaderError, tmp } from './util.js';

const b = createBackend('cpu');
const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A file of `pad` junk bytes then `body`; returns its path. */
function file(body: Buffer, pad = 13): string {
  const path = join(tmp('greta-stream-'), 'w.bin');
  writeFileSync(path, Buffer.concat([randomBytes(pad), body]));
  return path;
}

/** Q8_0 rows of `cols` values: a finite f16 scale and random int8s per block of 32. */
function q8Rows(rows: number, cols: number): Buffer {
  const out = randomBytes(rows * (cols / 32) * 34);
  for (let blk = 0; blk < out.length / 34; blk++) out.writeUInt16LE(numberToF16Bits(0.01 + blk * 1e-3), blk * 34);
  return out;
}

describe('WeightStreamer', () => {
  it('streams a tensor in many chunks with the exact bytes, reporting each chunk', () => {
    const body = randomBytes(37 * 24);
    const path = file(body);
    const seen: number[] = [];
    const s = new WeightStreamer(b, (n) => seen.push(n), 100);
    const t = s.tensor('f32', [37, 6], { file: path, where: 'w', offset: 13, rows: 37, rowBytes: 24 });
    s.close();
    expect(bytesOf(b.download(t))).toEqual(body);
    // 100 bytes hold 4 rows of 24: ten chunks, the last of one row.
    expect(seen).toEqual([...Array(9).fill(96), 24]);
  });

  it('a 1-D tensor is one row', () => {
    const body = randomBytes(40);
    const s = new WeightStreamer(b, undefined, 8);
    const t = s.tensor('bf16', [20], { file: file(body, 0), where: 'norm', offset: 0, rows: 1, rowBytes: 40 });
    s.close();
    expect(bytesOf(b.download(t))).toEqual(body);
  });

  it('keeps row groups whole for reordering stages, even when a group exceeds the chunk size', () => {
    const rows = 24;
    const rowBytes = 16;
    const headRows = 8;
    const body = randomBytes(rows * rowBytes);
    const want = Buffer.alloc(body.length);
    unpermuteRows(body, want, rows, rowBytes, headRows);
    const stage: RowStage = { rowBytes, groupRows: headRows, apply: (src, dst, n) => unpermuteRows(src, dst, n, rowBytes, headRows) };
    for (const chunk of [1, 200, 1 << 20]) {
      const s = new WeightStreamer(b, undefined, chunk);
      const t = s.tensor('f32', [rows, 4], { file: file(body), where: 'wq', offset: 13, rows, rowBytes }, [stage]);
      s.close();
      expect(bytesOf(b.download(t)), `chunk ${chunk}`).toEqual(want);
    }
  });

  it('chains Q8_0 dequantization and the Q/K reorder as the GGUF loader does', () => {
    const rows = 16;
    const cols = 64;
    const headRows = 4;
    const q = q8Rows(rows, cols);
    const deq = dequantizeQ8_0(q, rows * cols);
    const want = Buffer.alloc(deq.length);
    unpermuteRows(deq, want, rows, cols * 4, headRows);
    const stages: RowStage[] = [
      { rowBytes: cols * 4, groupRows: 1, apply: (src, dst, n) => dequantizeQ8_0(src, n * cols, dst) },
      { rowBytes: cols * 4, groupRows: headRows, apply: (src, dst, n) => unpermuteRows(src, dst, n, cols * 4, headRows) },
    ];
    const s = new WeightStreamer(b, undefined, 3 * cols * 4);
    const t = s.tensor('f32', [rows, cols], { file: file(q), where: 'blk.0.attn_q.weight', offset: 13, rows, rowBytes: (cols / 32) * 34 }, stages);
    s.close();
    expect(bytesOf(b.download(t))).toEqual(want);
    expect(new Float32Array(want.buffer, want.byteOffset, 4).every(Number.isFinite)).toBe(true);
  });

  it('names the file and tensor when the data runs past the end of the file', () => {
    const path = file(randomBytes(100), 0);
    const s = new WeightStreamer(b);
    expectLoaderError(
      () => s.tensor('f32', [26], { file: path, where: 'model.norm.weight', offset: 0, rows: 1, rowBytes: 104 }),
      path,
      'model.norm.weight',
      /^data \[0, 104\) extends past the end of the file \(100 bytes\)$/,
    );
    s.close();
  });
});
