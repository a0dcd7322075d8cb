// Writers of safetensors and GGUF files: fixtures for the loaders' tests and the fuzzer's seeds.
// They write what they are given without validating it, so tests can also build broken files
// (a dtype the reader refuses, 5 dimensions, repeated names); the returned layouts say where each
// header field landed, for tests and mutations that patch one field.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_TYPE, GGML_TYPES } from './gguf.js';

export interface SafetensorsTensor {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | string;
  shape: number[];
  data: Uint8Array;
}

/** A safetensors file from a header object (serialized here) or raw header text, and the data section. */
export function safetensorsBytes(header: string | Record<string, unknown>, data: Uint8Array): Buffer {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  // The reference writer pads the header with spaces so the data section starts 8-aligned.
  while (Buffer.byteLength(text) % 8 !== 0) text += ' ';
  const hdr = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hdr.length));
  return Buffer.concat([len, hdr, data]);
}

export function buildSafetensors(tensors: SafetensorsTensor[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  return safetensorsBytes(header, Buffer.concat(tensors.map((t) => t.data)));
}

export function writeSafetensors(path: string, tensors: SafetensorsTensor[], metadata?: Record<string, string>): void {
  writeFileSync(path, buildSafetensors(tensors, metadata));
}

/** Writes model-0000i-of-0000n.safetensors (tensors split into n contiguous groups) and model.safetensors.index.json. */
export function writeShardedSafetensors(dir: string, tensors: SafetensorsTensor[], nShards: number): string[] {
  mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / nShards);
  let total = 0;
  for (let s = 0; s < nShards; s++) {
    const shard = `model-${String(s + 1).padStart(5, '0')}-of-${String(nShards).padStart(5, '0')}.safetensors`;
    const group = tensors.slice(s * per, (s + 1) * per);
    writeSafetensors(join(dir, shard), group);
    for (const t of group) {
      weightMap[t.name] = shard;
      total += t.data.length;
    }
    names.push(shard);
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return names;
}

/**
 * A GGUF metadata entry. `value` by type: numbers for the integer and float types (bigint also
 * for u64/i64), boolean (or a number byte, to write a bad one) for bool, string for string; for
 * an array (type 9) `{ type: elementType, values: [...] }`, nested arrays written the same way.
 */
export interface GgufKv {
  key: string;
  type: number;
  value: unknown;
}

export interface GgufTensorSpec {
  name: string;
  ggmlType: number;
  ne: number[];
  data: Uint8Array;
}

export interface GgufSpec {
  version?: 2 | 3;
  /** Layout alignment; also written as general.alignment (u32) unless metadata has that key. */
  alignment?: number;
  metadata: GgufKv[];
  tensors: GgufTensorSpec[];
}

/** Where each field of the header landed (byte offsets in the file). */
export interface GgufLayout {
  version: number;
  nTensors: number;
  nKv: number;
  kv: { key: string; keyLen: number; type: number; value: number; arrayCounts: number[] }[];
  tensors: { name: string; nameLen: number; nDims: number; ne: number[]; type: number; offset: number; dataAt: number }[];
  headerEnd: number;
  dataOffset: number;
}

class Out {
  parts: Buffer[] = [];
  pos = 0;
  push(b: Buffer): number {
    const at = this.pos;
    this.parts.push(b);
    this.pos += b.length;
    return at;
  }
  u8(v: number): number {
    return this.push(Buffer.from([v & 0xff]));
  }
  u32(v: number): number {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.push(b);
  }
  u64(v: number | bigint): number {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)));
    return this.push(b);
  }
  str(s: string): number {
    const b = Buffer.from(s, 'utf8');
    const at = this.u64(b.length);
    this.push(b);
    return at;
  }
}

function writeValue(o: Out, type: number, value: unknown, arrayCounts: number[]): void {
  const num = value as number;
  const b = Buffer.alloc(8);
  switch (type) {
    case GGUF_TYPE.UINT8:
    case GGUF_TYPE.INT8:
      o.u8(num);
      return;
    case GGUF_TYPE.UINT16:
      b.writeUInt16LE(num);
      o.push(b.subarray(0, 2));
      return;
    case GGUF_TYPE.INT16:
      b.writeInt16LE(num);
      o.push(b.subarray(0, 2));
      return;
    case GGUF_TYPE.UINT32:
      o.u32(num);
      return;
    case GGUF_TYPE.INT32:
      b.writeInt32LE(num);
      o.push(b.subarray(0, 4));
      return;
    case GGUF_TYPE.FLOAT32:
      b.writeFloatLE(num);
      o.push(b.subarray(0, 4));
      return;
    case GGUF_TYPE.BOOL:
      o.u8(typeof value === 'boolean' ? (value ? 1 : 0) : num);
      return;
    case GGUF_TYPE.STRING:
      o.str(value as string);
      return;
    case GGUF_TYPE.UINT64:
    case GGUF_TYPE.INT64:
      o.u64(value as number | bigint);
      return;
    case GGUF_TYPE.FLOAT64:
      b.writeDoubleLE(num);
      o.push(b);
      return;
    case GGUF_TYPE.ARRAY: {
      const arr = value as { type: number; values: unknown[] };
      o.u32(arr.type);
      arrayCounts.push(o.u64(arr.values.length));
      for (const v of arr.values) writeValue(o, arr.type, v, arrayCounts);
      return;
    }
    default:
      // An invalid type: nothing more can be written for it.
      return;
  }
}

function padTo(x: number, a: number): number {
  return a > 0 ? Math.ceil(x / a) * a : x;
}

/** The bytes of a GGUF file and where its fields are. Tensor data goes at aligned offsets, in order. */
export function buildGguf(spec: GgufSpec): { bytes: Buffer; layout: GgufLayout } {
  const align = spec.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const metadata = [...spec.metadata];
  if (spec.alignment !== undefined && !metadata.some((m) => m.key === 'general.alignment')) {
    metadata.push({ key: 'general.alignment', type: GGUF_TYPE.UINT32, value: spec.alignment });
  }
  const o = new Out();
  o.push(Buffer.from('GGUF', 'latin1'));
  const version = o.u32(spec.version ?? 3);
  const nTensors = o.u64(spec.tensors.length);
  const nKv = o.u64(metadata.length);
  const kv: GgufLayout['kv'] = [];
  for (const m of metadata) {
    const keyLen = o.str(m.key);
    const type = o.u32(m.type);
    const arrayCounts: number[] = [];
    const value = o.pos;
    writeValue(o, m.type, m.value, arrayCounts);
    kv.push({ key: m.key, keyLen, type, value, arrayCounts });
  }
  const tensors: GgufLayout['tensors'] = [];
  let rel = 0;
  const rels: number[] = [];
  for (const t of spec.tensors) {
    const nameLen = o.str(t.name);
    const nDims = o.u32(t.ne.length);
    const ne = t.ne.map((d) => o.u64(d));
    const type = o.u32(t.ggmlType);
    const offset = o.u64(rel);
    rels.push(rel);
    tensors.push({ name: t.name, nameLen, nDims, ne, type, offset, dataAt: 0 });
    rel = padTo(rel + t.data.length, align);
  }
  const headerEnd = o.pos;
  const dataOffset = padTo(headerEnd, align);
  o.push(Buffer.alloc(dataOffset - headerEnd));
  spec.tensors.forEach((t, i) => {
    const at = dataOffset + rels[i]!;
    o.push(Buffer.alloc(at - o.pos));
    tensors[i]!.dataAt = o.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  });
  // The data section ends padded too, as llama.cpp writes it.
  o.push(Buffer.alloc(padTo(o.pos, align) - o.pos));
  return { bytes: Buffer.concat(o.parts), layout: { version, nTensors, nKv, kv, tensors, headerEnd, dataOffset } };
}

export function writeGguf(path: string, spec: GgufSpec): GgufLayout {
  const { bytes, layout } = buildGguf(spec);
  writeFileSync(path, bytes);
  return layout;
}

/** Number to IEEE half, round to nearest even (as the F16 conversion of ggml). */
export function numberToF16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** Number to bfloat16 bits, round to nearest even. */
export function numberToBf16(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/**
 * llama.cpp's reference Q8_0 quantizer (quantize_row_q8_0_ref): per block of 32, d = amax/127,
 * q = round(x/d), d stored as f16. values.length must be a multiple of 32.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % 32 !== 0) throw new Error(`Q8_0 needs a multiple of 32 values, got ${values.length}`);
  const nb = values.length / 32;
  const out = Buffer.alloc(nb * 34);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    out.writeUInt16LE(numberToF16(d), b * 34);
    for (let j = 0; j < 32; j++) {
      const x0 = Math.fround(values[b * 32 + j]! * id);
      out.writeInt8(Math.max(-128, Math.min(127, roundHalfAway(x0))), b * 34 + 2 + j);
    }
  }
  return out;
}

/** C roundf: halves away from zero. */
function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/** Element bytes of a GGUF tensor of this type and ne (for building fixtures). */
export function ggmlBytes(ggmlType: number, ne: number[]): number {
  const t = GGML_TYPES.get(ggmlType);
  if (!t) throw new Error(`unknown ggml type ${ggmlType}`);
  const n = ne.reduce((a, b) => a * b, 1);
  return (n / t[1]) * t[2];
}
