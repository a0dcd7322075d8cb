import { openSync, closeSync, ftruncateSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readGguf, readGgufTensor, type GgufValue } from '../../src/loaders/gguf.js';
import { ggufSeedMetadata, ggufSeedTensors } from '../../src/loaders/fuzz.js';
import { expectLoaderError, f32, patch, tmp, u16 } from './util.js';
import { f16ToNumber, GGML_TYPE_ID, GGUF_TYPE as T, ggmlBytes, numberToBf16, numberToF16, quantizeQ8_0, writeGguf, type GgufKv, type GgufSpec, type GgufTensorSpec } from './writers.js';

const F32 = GGML_TYPE_ID.F32!;
const Q8_0 = GGML_TYPE_ID.Q8_0!;

function file(spec: GgufSpec) {
  const p = join(tmp(), 'model.gguf');
  const layout = writeGguf(p, spec);
  return { p, layout };
}

const t4 = (name = 'w', ne = [4]): GgufTensorSpec => ({ name, ggmlType: F32, ne, data: new Uint8Array(ggmlBytes(F32, ne)) });
const simple = (extra: Partial<GgufSpec> = {}) => file({ metadata: [{ key: 'general.architecture', type: T.STRING, value: 'llama' }], tensors: [t4('a'), t4('b')], ...extra });

/** Expected JS value of a writer metadata value. */
function expected(type: number, value: unknown): GgufValue {
  if (type === T.ARRAY) {
    const a = value as { type: number; values: unknown[] };
    return a.values.map((v) => expected(a.type, v));
  }
  if (type === T.FLOAT32) return Math.fround(value as number);
  if (type === T.UINT64 || type === T.INT64) return BigInt(value as bigint);
  return value as GgufValue;
}

describe('GGUF round trip', () => {
  for (const [version, alignment] of [
    [3, undefined],
    [2, undefined],
    [3, 64],
    [2, 8],
  ] as const) {
    it(`v${version} alignment ${alignment ?? 'default'}: metadata of every type and F32/F16/BF16/Q8_0 tensors`, () => {
      const metadata = ggufSeedMetadata();
      const tensors = ggufSeedTensors();
      const { p, layout } = file({ version, alignment, metadata, tensors });
      const g = readGguf(p);
      expect(g.version).toBe(version);
      expect(g.alignment).toBe(alignment ?? 32);
      expect(g.dataOffset).toBe(layout.dataOffset);
      expect(g.dataOffset % g.alignment).toBe(0);
      for (const m of metadata) expect(g.metadata.get(m.key), m.key).toEqual(expected(m.type, m.value));
      expect(g.metadata.get('k.u64')).toBe(1n << 40n);
      expect(g.metadata.get('k.i64')).toBe(-(1n << 40n));
      expect(g.metadata.get('k.arr.nested')).toEqual([[1, 2], ['x']]);
      const bytes = readFileSync(p);
      for (const [i, t] of tensors.entries()) {
        const info = g.tensors.get(t.name)!;
        expect(info.ggmlType).toBe(t.ggmlType);
        expect(info.ne).toEqual(t.ne);
        expect(info.shape).toEqual([...t.ne].reverse());
        expect(info.offset).toBe(layout.tensors[i]!.dataAt);
        expect(info.offset % g.alignment).toBe(0);
        expect(info.bytes).toBe(t.data.length);
        expect(bytes.subarray(info.offset, info.offset + info.bytes).equals(Buffer.from(t.data))).toBe(true);
      }
      const rd = (n: string) => readGgufTensor(g.tensors.get(n)!);
      expect(rd('blk.0.f32')).toEqual({ dtype: 'f32', data: Buffer.from(tensors[0]!.data) });
      expect(rd('blk.0.f16')).toEqual({ dtype: 'f16', data: Buffer.from(tensors[1]!.data) });
      expect(rd('blk.0.bf16')).toEqual({ dtype: 'bf16', data: Buffer.from(tensors[2]!.data) });
      expect(g.tensors.get('blk.0.q8_0')!.typeName).toBe('Q8_0');
      const q = rd('blk.0.q8_0');
      expect(q.dtype).toBe('f32');
      expect(q.data.length).toBe(64 * 4);
    });
  }

  it('Q8_0 dequantizes to exactly f16(d) * q, row-major', () => {
    const values = new Float32Array(96);
    for (let i = 0; i < 96; i++) values[i] = (i % 5) - 2.3 + i / 17;
    const qbytes = Buffer.from(quantizeQ8_0(values));
    const { p } = file({ metadata: [], tensors: [{ name: 'q', ggmlType: Q8_0, ne: [32, 3], data: qbytes }] });
    const info = readGguf(p).tensors.get('q')!;
    expect(info.shape).toEqual([3, 32]);
    const { dtype, data } = readGgufTensor(info);
    expect(dtype).toBe('f32');
    for (let b = 0; b < 3; b++) {
      const d = f16ToNumber(qbytes.readUInt16LE(b * 34));
      for (let j = 0; j < 32; j++) {
        const want = Math.fround(d * qbytes.readInt8(b * 34 + 2 + j));
        expect(data.readFloatLE((b * 32 + j) * 4)).toBe(want);
        // and the exact product needs no rounding in f32
        expect(want).toBe(d * qbytes.readInt8(b * 34 + 2 + j));
        // within half a quantization step of the input
        expect(Math.abs(want - values[b * 32 + j]!)).toBeLessThanOrEqual(d);
      }
    }
  });

  it('quantizeQ8_0 is the reference quantizer: d = amax/127 as f16, q = round(x/d)', () => {
    const v = new Float32Array(32);
    for (let i = 0; i < 32; i++) v[i] = i - 15; // amax 16
    const q = Buffer.from(quantizeQ8_0(v));
    expect(q.readUInt16LE(0)).toBe(numberToF16(16 / 127));
    const id = Math.fround(1 / Math.fround(16 / 127));
    for (let i = 0; i < 32; i++) expect(q.readInt8(2 + i)).toBe(Math.sign(v[i]!) * Math.round(Math.abs(Math.fround(v[i]! * id))));
    expect(q.readInt8(2 + 31)).toBe(127);
    expect(Buffer.from(quantizeQ8_0(new Float32Array(32))).equals(Buffer.alloc(34))).toBe(true);
  });

  it('a known-but-unloadable type parses and is refused at read time', () => {
    const ne = [32, 2];
    const { p } = file({ metadata: [], tensors: [{ name: 'q4', ggmlType: GGML_TYPE_ID.Q4_0!, ne, data: new Uint8Array(ggmlBytes(GGML_TYPE_ID.Q4_0!, ne)) }] });
    const info = readGguf(p).tensors.get('q4')!;
    expect(info).toMatchObject({ typeName: 'Q4_0', bytes: 36, shape: [2, 32] });
    expectLoaderError(() => readGgufTensor(info), p, 'q4', /type Q4_0 is not supported \(loadable: F32, F16, BF16, Q8_0\)/);
  });

  it('f16 and bf16 helpers are exact on representable values', () => {
    for (const x of [0, 1, -2, 0.5, 65504, 2 ** -24, -(2 ** -14)]) expect(f16ToNumber(numberToF16(x))).toBe(x);
    expect(numberToF16(Infinity)).toBe(0x7c00);
    expect(numberToBf16(1)).toBe(0x3f80);
    expect(u16([1]).length).toBe(2);
    expect(f32([1]).length).toBe(4);
  });
});

describe('GGUF corruption: one LoaderError per check', () => {
  it('missing file', () => {
    const p = join(tmp(), 'none.gguf');
    expectLoaderError(() => readGguf(p), p, null, /cannot open: ENOENT/);
  });

  it('file shorter than the fixed header', () => {
    const p = join(tmp(), 'x.gguf');
    writeFileSync(p, Buffer.from('GGUF\x03\x00\x00\x00', 'latin1'));
    expectLoaderError(() => readGguf(p), p, null, /8 bytes, shorter than the 24-byte GGUF header/);
  });

  it('bad magic', () => {
    const { p } = simple();
    patch(p, (b) => void b.write('GGML', 0, 'latin1'));
    expectLoaderError(() => readGguf(p), p, 'magic', /bad magic "GGML" \(expected "GGUF"\)/);
  });

  it('GGUF v1 refused with a clear message', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeUInt32LE(1, layout.version));
    expectLoaderError(() => readGguf(p), p, 'version', /GGUF v1 is not supported \(only v2 and v3\)/);
  });

  it('unknown and byte-swapped versions', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeUInt32LE(4, layout.version));
    expectLoaderError(() => readGguf(p), p, 'version', /unsupported version 4 \(supported: 2, 3\)/);
    patch(p, (b) => void b.writeUInt32BE(3, layout.version));
    expectLoaderError(() => readGguf(p), p, 'version', /looks byte-swapped: big-endian GGUF is not supported/);
  });

  it('CVE class: huge n_tensors fails fast without allocating', () => {
    const { p, layout } = simple();
    for (const n of [(1n << 64n) - 1n, 1n << 62n, 1n << 40n]) {
      patch(p, (b) => void b.writeBigUInt64LE(n, layout.nTensors));
      const t0 = performance.now();
      expectLoaderError(() => readGguf(p), p, 'n_tensors', new RegExp(`${n} exceeds the limit of 1048576`));
      expect(performance.now() - t0).toBeLessThan(50);
    }
  });

  it('n_tensors more than the file can hold', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(100000n, layout.nTensors));
    expectLoaderError(() => readGguf(p), p, 'n_tensors', /100000 tensor infos cannot fit in a file of \d+ bytes/);
  });

  it('huge n_kv', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(1n << 63n, layout.nKv));
    expectLoaderError(() => readGguf(p), p, 'n_kv', /9223372036854775808 exceeds the limit of 1048576/);
    patch(p, (b) => void b.writeBigUInt64LE(50000n, layout.nKv));
    expectLoaderError(() => readGguf(p), p, 'n_kv', /50000 key-value pairs and 2 tensor infos cannot fit/);
  });

  it('CVE class: key string length past the end of the file', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(60000n, layout.kv[0]!.keyLen));
    expectLoaderError(() => readGguf(p), p, 'key #0', /key length 60000 at byte 24 runs past the end of the file/);
  });

  it('key length over the cap', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE((1n << 64n) - 1n, layout.kv[0]!.keyLen));
    expectLoaderError(() => readGguf(p), p, 'key #0', /key length 18446744073709551615 exceeds the limit of 65536 bytes/);
  });

  it('CVE class: metadata string value length past the end of the file', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(1n << 40n, layout.kv[0]!.value));
    expectLoaderError(() => readGguf(p), p, 'general.architecture', /string value length 1099511627776 exceeds the limit of 536870912 bytes/);
    patch(p, (b) => void b.writeBigUInt64LE(5000n, layout.kv[0]!.value));
    expectLoaderError(() => readGguf(p), p, 'general.architecture', /string value length 5000 at byte \d+ runs past the end of the file/);
  });

  it('header larger than the 512 MiB cap (sparse file)', () => {
    const { p, layout } = simple();
    const len = 520n * 1024n * 1024n;
    patch(p, (b) => void b.writeBigUInt64LE(512n * 1024n * 1024n - 10n, layout.kv[0]!.value));
    const fd = openSync(p, 'r+');
    ftruncateSync(fd, Number(len));
    closeSync(fd);
    expectLoaderError(() => readGguf(p), p, 'general.architecture', /runs past the end of the header limit/);
  });

  it('CVE class: tensor name length past the end of the file', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(63n, layout.tensors[1]!.nameLen));
    patch(p, (b) => b.subarray(0, layout.tensors[1]!.nameLen + 30));
    expectLoaderError(() => readGguf(p), p, 'tensor #1', /tensor name length 63 at byte \d+ runs past the end of the file/);
  });

  it('tensor name longer than GGML_MAX_NAME', () => {
    const { p } = file({ metadata: [], tensors: [t4('x'.repeat(64))] });
    expectLoaderError(() => readGguf(p), p, 'tensor #0', /tensor name length 64 exceeds the limit of 63 bytes/);
  });

  it('empty key', () => {
    const { p } = file({ metadata: [{ key: '', type: T.UINT8, value: 1 }], tensors: [] });
    expectLoaderError(() => readGguf(p), p, 'key #0', /key is empty/);
  });

  it('key not UTF-8', () => {
    const { p, layout } = file({ metadata: [{ key: 'ab', type: T.UINT8, value: 1 }], tensors: [] });
    patch(p, (b) => void b.fill(0xff, layout.kv[0]!.keyLen + 8, layout.kv[0]!.keyLen + 9));
    expectLoaderError(() => readGguf(p), p, 'key #0', /key is not valid UTF-8/);
  });

  it('invalid value type', () => {
    const { p } = file({ metadata: [{ key: 'bad.type', type: 13, value: 0 }, { key: 'x', type: T.UINT32, value: 0 }], tensors: [] });
    expectLoaderError(() => readGguf(p), p, 'bad.type', /value type 13 is not a GGUF value type \(0..12\)/);
  });

  it('invalid array element type', () => {
    const { p } = file({ metadata: [{ key: 'arr', type: T.ARRAY, value: { type: 77, values: [] } }], tensors: [] });
    expectLoaderError(() => readGguf(p), p, 'arr', /array element type 77 is not a GGUF value type/);
  });

  it('CVE class: array count overflow (count x element size wraps in 64 bits)', () => {
    const { p, layout } = file({ metadata: [{ key: 'arr', type: T.ARRAY, value: { type: T.UINT64, values: [1n, 2n] } }], tensors: [t4()] });
    // 2^61 * 8 = 2^64 wraps to 0 in u64 arithmetic
    patch(p, (b) => void b.writeBigUInt64LE(1n << 61n, layout.kv[0]!.arrayCounts[0]!));
    expectLoaderError(() => readGguf(p), p, 'arr', /array of 2305843009213693952 u64 at byte \d+ needs at least 18446744073709551616 bytes/);
  });

  it('array of strings longer than the file', () => {
    const { p, layout } = file({ metadata: [{ key: 'tokens', type: T.ARRAY, value: { type: T.STRING, values: ['a', 'b'] } }], tensors: [] });
    patch(p, (b) => void b.writeBigUInt64LE(1000n, layout.kv[0]!.arrayCounts[0]!));
    expectLoaderError(() => readGguf(p), p, 'tokens', /array of 1000 str at byte \d+ needs at least 8000 bytes/);
  });

  it('nested arrays deeper than the limit', () => {
    let v: unknown = { type: T.UINT8, values: [1] };
    for (let i = 0; i < 4; i++) v = { type: T.ARRAY, values: [v] };
    const { p } = file({ metadata: [{ key: 'deep', type: T.ARRAY, value: v }], tensors: [] });
    expectLoaderError(() => readGguf(p), p, 'deep', /arrays nested deeper than 4 levels/);
  });

  it('bool byte not 0 or 1', () => {
    const { p } = file({ metadata: [{ key: 'flag', type: T.BOOL, value: 2 }], tensors: [] });
    expectLoaderError(() => readGguf(p), p, 'flag', /bool value at byte \d+ is 2, not 0 or 1/);
  });

  it('duplicate key', () => {
    const kv: GgufKv = { key: 'general.name', type: T.STRING, value: 'x' };
    const { p } = file({ metadata: [kv, { key: 'y', type: T.UINT8, value: 0 }, kv], tensors: [] });
    expectLoaderError(() => readGguf(p), p, 'general.name', /duplicate key \(key #2 repeats an earlier one\)/);
  });

  it('general.alignment not u32', () => {
    const { p } = file({ metadata: [{ key: 'general.alignment', type: T.UINT64, value: 32n }], tensors: [t4()] });
    expectLoaderError(() => readGguf(p), p, 'general.alignment', /must be of type u32 but is u64/);
  });

  it('CVE class: alignment zero or not a power of two', () => {
    for (const a of [0, 3, 48, 0x80000001]) {
      const { p } = file({ metadata: [{ key: 'general.alignment', type: T.UINT32, value: a }], tensors: [t4()] });
      expectLoaderError(() => readGguf(p), p, 'general.alignment', new RegExp(`alignment ${a} is not a non-zero power of two`));
    }
  });

  it('CVE class: n_dims > 4 (and 0)', () => {
    const { p } = file({ metadata: [], tensors: [t4('five', [1, 1, 1, 1, 4])] });
    expectLoaderError(() => readGguf(p), p, 'five', /n_dims is 5, must be 1..4/);
    const { p: q, layout } = simple();
    patch(q, (b) => void b.writeUInt32LE(0, layout.tensors[0]!.nDims));
    expectLoaderError(() => readGguf(q), q, 'a', /n_dims is 0, must be 1..4/);
  });

  it('negative dimension', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigInt64LE(-4n, layout.tensors[1]!.ne[0]!));
    expectLoaderError(() => readGguf(p), p, 'b', /ne\[0\] is negative \(-4\)/);
  });

  it('zero dimension', () => {
    const { p } = file({ metadata: [], tensors: [{ name: 'z', ggmlType: F32, ne: [4, 0], data: new Uint8Array(0) }] });
    expectLoaderError(() => readGguf(p), p, 'z', /ne\[1\] is 0: empty tensors are not supported/);
  });

  it('CVE class: element count overflow', () => {
    const { p } = file({ metadata: [], tensors: [{ name: 'big', ggmlType: F32, ne: [2 ** 32, 2 ** 32, 2 ** 32], data: new Uint8Array(0) }] });
    expectLoaderError(() => readGguf(p), p, 'big', /element count of ne \[4294967296, 4294967296, 4294967296\] overflows \(>= 2\^62\)/);
  });

  it('unknown ggml type', () => {
    for (const t of [4, 31, 40, 0xffffffff]) {
      const { p } = file({ metadata: [], tensors: [{ name: 'q', ggmlType: t, ne: [32], data: new Uint8Array(0) }] });
      expectLoaderError(() => readGguf(p), p, 'q', new RegExp(`ggml type ${t} is not a known ggml type`));
    }
  });

  it('ne[0] not a multiple of the block size', () => {
    const { p } = file({ metadata: [], tensors: [{ name: 'q', ggmlType: Q8_0, ne: [16, 2], data: new Uint8Array(34) }] });
    expectLoaderError(() => readGguf(p), p, 'q', /ne\[0\] = 16 is not a multiple of the Q8_0 block size 32/);
  });

  it('tensor offset not aligned', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(8n, layout.tensors[1]!.offset));
    expectLoaderError(() => readGguf(p), p, 'b', /data offset 8 is not a multiple of the alignment 32/);
  });

  it('CVE class: tensor offset out of range', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(0xffffffffffffffe0n, layout.tensors[1]!.offset));
    expectLoaderError(() => readGguf(p), p, 'b', /data \[\d+, \d+\) \(offset 18446744073709551584 in the data section, 16 bytes of F32\) extends past the end of the file/);
  });

  it('tensor data past the end of a truncated file', () => {
    const { p, layout } = simple();
    patch(p, (b) => b.subarray(0, layout.tensors[1]!.dataAt + 8));
    expectLoaderError(() => readGguf(p), p, 'b', /extends past the end of the file/);
  });

  it('data section starting past the end of the file', () => {
    const { p, layout } = simple();
    patch(p, (b) => b.subarray(0, layout.headerEnd + 1));
    expectLoaderError(() => readGguf(p), p, 'data section', /past the end of the file/);
  });

  it('overlapping tensors', () => {
    const { p, layout } = simple();
    patch(p, (b) => void b.writeBigUInt64LE(0n, layout.tensors[1]!.offset));
    expectLoaderError(() => readGguf(p), p, 'b', /data \[0, 16\) overlaps tensor "a" \[0, 16\)/);
  });

  it('CVE class: duplicate tensor names', () => {
    const { p } = file({ metadata: [], tensors: [t4('w'), t4('v'), t4('w')] });
    expectLoaderError(() => readGguf(p), p, 'w', /duplicate tensor name \(tensor #2 repeats an earlier one\)/);
  });

  it('unexpected end of file inside the tensor infos', () => {
    const { p, layout } = simple();
    patch(p, (b) => b.subarray(0, layout.tensors[1]!.type + 2));
    expectLoaderError(() => readGguf(p), p, 'b', /unexpected end of file reading ggml type/);
  });
});
