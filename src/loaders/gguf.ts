// Reader for GGUF files (v2 and v3, little-endian) from untrusted sources. The checks follow
// llama.cpp's gguf_init_from_file_impl (ggml/src/gguf.cpp) and the corruption classes of its
// tests/test-gguf.cpp, plus bounds that keep a hostile header from making us allocate: counts are
// checked against the bytes left in the file before anything is sized from them.
//
// Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv of (string key, u32 type, value);
// n_tensors of (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset); padding to
// the alignment; the data section. Strings are u64 length + bytes.
import { constants as bufferConstants } from 'node:buffer';
import { LoaderError } from './errors.js';
import { closeQuietly, openRegular, readFully, readRange } from './io.js';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  ggmlType: number;
  /** 'F32', 'F16', 'BF16', 'Q8_0', ... */
  typeName: string;
  /** GGUF order, ne[0] fastest. */
  ne: number[];
  /** Row-major = ne reversed. */
  shape: number[];
  /** Absolute in file. */
  offset: number;
  bytes: number;
  file: string;
}

export interface GgufFile {
  path: string;
  version: number;
  alignment: number;
  dataOffset: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
}

/** Metadata value types. */
export const GGUF_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
const VALUE_TYPE_NAMES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'str', 'arr', 'u64', 'i64', 'f64'];
const VALUE_TYPE_SIZES = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];

/** ggml tensor types: [name, elements per block, bytes per block]. Ids missing here were removed from ggml. */
export const GGML_TYPES: ReadonlyMap<number, readonly [string, number, number]> = new Map([
  [0, ['F32', 1, 4]],
  [1, ['F16', 1, 2]],
  [2, ['Q4_0', 32, 18]],
  [3, ['Q4_1', 32, 20]],
  [6, ['Q5_0', 32, 22]],
  [7, ['Q5_1', 32, 24]],
  [8, ['Q8_0', 32, 34]],
  [9, ['Q8_1', 32, 36]],
  [10, ['Q2_K', 256, 84]],
  [11, ['Q3_K', 256, 110]],
  [12, ['Q4_K', 256, 144]],
  [13, ['Q5_K', 256, 176]],
  [14, ['Q6_K', 256, 210]],
  [15, ['Q8_K', 256, 292]],
  [16, ['IQ2_XXS', 256, 66]],
  [17, ['IQ2_XS', 256, 74]],
  [18, ['IQ3_XXS', 256, 98]],
  [19, ['IQ1_S', 256, 50]],
  [20, ['IQ4_NL', 32, 18]],
  [21, ['IQ3_S', 256, 110]],
  [22, ['IQ2_S', 256, 82]],
  [23, ['IQ4_XS', 256, 136]],
  [24, ['I8', 1, 1]],
  [25, ['I16', 1, 2]],
  [26, ['I32', 1, 4]],
  [27, ['I64', 1, 8]],
  [28, ['F64', 1, 8]],
  [29, ['IQ1_M', 256, 56]],
  [30, ['BF16', 1, 2]],
  [34, ['TQ1_0', 256, 54]],
  [35, ['TQ2_0', 256, 66]],
  [39, ['MXFP4', 32, 17]],
] as const);
export const GGML_TYPE_ID = Object.fromEntries([...GGML_TYPES].map(([id, [name]]) => [name, id])) as Record<string, number>;

export const GGUF_DEFAULT_ALIGNMENT = 32;
/** The header (everything before the data section) may not exceed this. */
export const MAX_HEADER_BYTES = 512 * 1024 * 1024;
/** Bounds on the counts in the header, on top of what fits in the file. */
export const MAX_TENSORS = 1 << 20;
export const MAX_KV = 1 << 20;
/** Keys; tensor names are held to llama.cpp's GGML_MAX_NAME (64, including the terminator). */
export const MAX_KEY_BYTES = 1 << 16;
export const MAX_NAME_BYTES = 63;
export const MAX_ARRAY_DEPTH = 4;
/** All metadata array elements together: caps the memory a header can make us spend on values. */
export const MAX_ARRAY_ELEMENTS_TOTAL = 1 << 24;
const MAX_DIMS = 4;
const MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8; // name length, 1-byte name, n_dims, one ne, type, offset
const MIN_KV_BYTES = 8 + 1 + 4 + 1; // key length, 1-byte key, type, a u8 value
const FIXED_HEADER_BYTES = 4 + 4 + 8 + 8;

const U64_2_63 = 1n << 63n;
const MAX_ELEMENTS = 1n << 62n;

/** Incremental reads of the header region through a small buffer, never past `limit`. */
class HeaderReader {
  pos = 0;
  private buf = Buffer.alloc(64 * 1024);
  private bufStart = 0;
  private bufLen = 0;
  readonly limit: number;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });
  private readonly utf8Lossy = new TextDecoder('utf-8');

  constructor(
    readonly fd: number,
    readonly file: string,
    readonly size: number,
  ) {
    this.limit = Math.min(size, MAX_HEADER_BYTES);
  }

  get remaining(): number {
    return this.limit - this.pos;
  }

  fail(where: string | null, what: string): never {
    throw new LoaderError(this.file, where, what);
  }

  private need(n: number, where: string | null, what: string): void {
    if (n > this.limit - this.pos) {
      if (this.pos + n > this.size) this.fail(where, `unexpected end of file reading ${what} at byte ${this.pos} (${n} bytes wanted, ${this.size - this.pos} left)`);
      this.fail(where, `header exceeds ${MAX_HEADER_BYTES} bytes reading ${what} at byte ${this.pos}`);
    }
  }

  /** A view of the next n bytes (valid until the next read); n is small. */
  private view(n: number, where: string | null, what: string): Buffer {
    this.need(n, where, what);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.bufLen) {
      const len = Math.min(this.buf.length, this.limit - this.pos);
      readFully(this.fd, this.file, where, this.buf, len, this.pos);
      this.bufStart = this.pos;
      this.bufLen = len;
    }
    const off = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(off, off + n);
  }

  /** A copy of the next n bytes; n has been checked against the bytes left. */
  bytes(n: number, where: string | null, what: string): Buffer {
    if (n <= this.buf.length) return Buffer.from(this.view(n, where, what));
    this.need(n, where, what);
    const out = Buffer.allocUnsafe(n);
    readFully(this.fd, this.file, where, out, n, this.pos);
    this.pos += n;
    return out;
  }

  u8(where: string | null, what: string): number {
    return this.view(1, where, what).readUInt8(0);
  }
  i8(where: string | null, what: string): number {
    return this.view(1, where, what).readInt8(0);
  }
  u16(where: string | null, what: string): number {
    return this.view(2, where, what).readUInt16LE(0);
  }
  i16(where: string | null, what: string): number {
    return this.view(2, where, what).readInt16LE(0);
  }
  u32(where: string | null, what: string): number {
    return this.view(4, where, what).readUInt32LE(0);
  }
  i32(where: string | null, what: string): number {
    return this.view(4, where, what).readInt32LE(0);
  }
  u64(where: string | null, what: string): bigint {
    return this.view(8, where, what).readBigUInt64LE(0);
  }
  i64(where: string | null, what: string): bigint {
    return this.view(8, where, what).readBigInt64LE(0);
  }
  f32(where: string | null, what: string): number {
    return this.view(4, where, what).readFloatLE(0);
  }
  f64(where: string | null, what: string): number {
    return this.view(8, where, what).readDoubleLE(0);
  }

  /** A u64-length-prefixed string; `max` bounds the length on top of the bytes left. */
  string(where: string | null, what: string, max: number, strict: boolean): string {
    const len = this.u64(where, `${what} length`);
    if (len > BigInt(max)) this.fail(where, `${what} length ${len} exceeds the limit of ${max} bytes`);
    if (len > BigInt(this.remaining)) {
      this.fail(where, `${what} length ${len} at byte ${this.pos - 8} runs past the end of the ${this.limit === this.size ? 'file' : 'header limit'} (${this.remaining} bytes left)`);
    }
    const raw = this.bytes(Number(len), where, what);
    if (!strict) return this.utf8Lossy.decode(raw);
    try {
      return this.utf8.decode(raw);
    } catch {
      return this.fail(where, `${what} is not valid UTF-8`);
    }
  }
}

function valueTypeName(t: number): string {
  return VALUE_TYPE_NAMES[t] ?? `#${t}`;
}

interface ParseState {
  r: HeaderReader;
  arrayElements: number;
}

function readValue(st: ParseState, key: string, type: number, depth: number): GgufValue {
  const r = st.r;
  switch (type) {
    case GGUF_TYPE.UINT8:
      return r.u8(key, 'u8 value');
    case GGUF_TYPE.INT8:
      return r.i8(key, 'i8 value');
    case GGUF_TYPE.UINT16:
      return r.u16(key, 'u16 value');
    case GGUF_TYPE.INT16:
      return r.i16(key, 'i16 value');
    case GGUF_TYPE.UINT32:
      return r.u32(key, 'u32 value');
    case GGUF_TYPE.INT32:
      return r.i32(key, 'i32 value');
    case GGUF_TYPE.FLOAT32:
      return r.f32(key, 'f32 value');
    case GGUF_TYPE.BOOL: {
      const at = r.pos;
      const b = r.u8(key, 'bool value');
      if (b > 1) r.fail(key, `bool value at byte ${at} is ${b}, not 0 or 1`);
      return b === 1;
    }
    case GGUF_TYPE.STRING:
      return r.string(key, 'string value', MAX_HEADER_BYTES, false);
    case GGUF_TYPE.UINT64:
      return r.u64(key, 'u64 value');
    case GGUF_TYPE.INT64:
      return r.i64(key, 'i64 value');
    case GGUF_TYPE.FLOAT64:
      return r.f64(key, 'f64 value');
    case GGUF_TYPE.ARRAY: {
      if (depth >= MAX_ARRAY_DEPTH) r.fail(key, `arrays nested deeper than ${MAX_ARRAY_DEPTH} levels`);
      const elemType = r.u32(key, 'array element type');
      if (elemType > 12) r.fail(key, `array element type ${elemType} is not a GGUF value type (0..12)`);
      const countAt = r.pos;
      const count = r.u64(key, 'array count');
      // The least each element can take in the file: its fixed size, a string's u64 length, a
      // nested array's type and count. Exact BigInt arithmetic: no overflow.
      const minElem = elemType === GGUF_TYPE.STRING ? 8 : elemType === GGUF_TYPE.ARRAY ? 12 : VALUE_TYPE_SIZES[elemType]!;
      if (count * BigInt(minElem) > BigInt(r.remaining)) {
        r.fail(key, `array of ${count} ${valueTypeName(elemType)} at byte ${countAt} needs at least ${count * BigInt(minElem)} bytes, ${r.remaining} left`);
      }
      const n = Number(count);
      if (st.arrayElements + n > MAX_ARRAY_ELEMENTS_TOTAL) r.fail(key, `metadata arrays hold more than ${MAX_ARRAY_ELEMENTS_TOTAL} elements in total`);
      st.arrayElements += n;
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(st, key, elemType, depth + 1);
      return out;
    }
    default:
      return r.fail(key, `value type ${type} is not a GGUF value type (0..12)`);
  }
}

function pad(x: bigint, align: bigint): bigint {
  return ((x + align - 1n) / align) * align;
}

export function readGguf(path: string): GgufFile {
  const { fd, size } = openRegular(path);
  try {
    return parse(new HeaderReader(fd, path, size));
  } finally {
    closeQuietly(fd);
  }
}

function parse(r: HeaderReader): GgufFile {
  const path = r.file;
  if (r.size < FIXED_HEADER_BYTES) r.fail(null, `file is ${r.size} bytes, shorter than the ${FIXED_HEADER_BYTES}-byte GGUF header`);
  const magic = r.bytes(4, 'magic', 'magic');
  if (magic.toString('latin1') !== 'GGUF') r.fail('magic', `bad magic ${JSON.stringify(magic.toString('latin1'))} (expected "GGUF")`);
  const version = r.u32('version', 'version');
  if (version === 1) r.fail('version', 'GGUF v1 is not supported (only v2 and v3); convert the file with a current llama.cpp');
  if (version !== 2 && version !== 3) {
    r.fail('version', (version & 0xffff) === 0 && version !== 0 ? `version ${version} looks byte-swapped: big-endian GGUF is not supported` : `unsupported version ${version} (supported: 2, 3)`);
  }
  const nTensorsBig = r.u64('n_tensors', 'n_tensors');
  const nKvBig = r.u64('n_kv', 'n_kv');
  const room = BigInt(r.size - FIXED_HEADER_BYTES);
  if (nTensorsBig > BigInt(MAX_TENSORS)) r.fail('n_tensors', `${nTensorsBig} exceeds the limit of ${MAX_TENSORS}`);
  if (nTensorsBig * BigInt(MIN_TENSOR_INFO_BYTES) > room) {
    r.fail('n_tensors', `${nTensorsBig} tensor infos cannot fit in a file of ${r.size} bytes (each takes at least ${MIN_TENSOR_INFO_BYTES})`);
  }
  if (nKvBig > BigInt(MAX_KV)) r.fail('n_kv', `${nKvBig} exceeds the limit of ${MAX_KV}`);
  if (nKvBig * BigInt(MIN_KV_BYTES) + nTensorsBig * BigInt(MIN_TENSOR_INFO_BYTES) > room) {
    r.fail('n_kv', `${nKvBig} key-value pairs and ${nTensorsBig} tensor infos cannot fit in a file of ${r.size} bytes`);
  }
  const nTensors = Number(nTensorsBig);
  const nKv = Number(nKvBig);

  const st: ParseState = { r, arrayElements: 0 };
  const metadata = new Map<string, GgufValue>();
  const kvTypes = new Map<string, number>();
  for (let i = 0; i < nKv; i++) {
    const where = `key #${i}`;
    const key = r.string(where, 'key', MAX_KEY_BYTES, true);
    if (key === '') r.fail(where, 'key is empty');
    if (metadata.has(key)) r.fail(key, `duplicate key (key #${i} repeats an earlier one)`);
    const type = r.u32(key, 'value type');
    if (type > 12) r.fail(key, `value type ${type} is not a GGUF value type (0..12)`);
    metadata.set(key, readValue(st, key, type, 0));
    kvTypes.set(key, type);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (metadata.has('general.alignment')) {
    const t = kvTypes.get('general.alignment')!;
    if (t !== GGUF_TYPE.UINT32) r.fail('general.alignment', `must be of type u32 but is ${valueTypeName(t)}`);
    alignment = metadata.get('general.alignment') as number;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) r.fail('general.alignment', `alignment ${alignment} is not a non-zero power of two`);
  }
  const align = BigInt(alignment);

  type Raw = { name: string; ggmlType: number; typeName: string; ne: bigint[]; rel: bigint; bytes: bigint };
  const raws: Raw[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const idx = `tensor #${i}`;
    const name = r.string(idx, 'tensor name', MAX_NAME_BYTES, true);
    if (name === '') r.fail(idx, 'tensor name is empty');
    if (names.has(name)) r.fail(name, `duplicate tensor name (tensor #${i} repeats an earlier one)`);
    names.add(name);
    const nDims = r.u32(name, 'n_dims');
    if (nDims === 0 || nDims > MAX_DIMS) r.fail(name, `n_dims is ${nDims}, must be 1..${MAX_DIMS}`);
    const ne: bigint[] = [];
    for (let j = 0; j < nDims; j++) {
      const d = r.u64(name, `ne[${j}]`);
      if (d >= U64_2_63) r.fail(name, `ne[${j}] is negative (${d - (1n << 64n)})`);
      if (d === 0n) r.fail(name, `ne[${j}] is 0: empty tensors are not supported`);
      ne.push(d);
    }
    let nel = 1n;
    for (const d of ne) {
      nel *= d;
      if (nel >= MAX_ELEMENTS) r.fail(name, `element count of ne [${ne.join(', ')}] overflows (>= 2^62)`);
    }
    const ggmlType = r.u32(name, 'ggml type');
    const t = GGML_TYPES.get(ggmlType);
    if (!t) r.fail(name, `ggml type ${ggmlType} is not a known ggml type`);
    const [typeName, blck, typeSize] = t;
    if (ne[0]! % BigInt(blck) !== 0n) r.fail(name, `ne[0] = ${ne[0]} is not a multiple of the ${typeName} block size ${blck}`);
    const bytes = (nel / BigInt(blck)) * BigInt(typeSize);
    const rel = r.u64(name, 'offset');
    if (rel % align !== 0n) r.fail(name, `data offset ${rel} is not a multiple of the alignment ${alignment}`);
    raws.push({ name, ggmlType, typeName, ne, rel, bytes });
  }

  const dataOffset = pad(BigInt(r.pos), align);
  const fileSize = BigInt(r.size);
  if (nTensors > 0 && dataOffset > fileSize) r.fail('data section', `starts at byte ${dataOffset} (header end ${r.pos} padded to ${alignment}), past the end of the file (${r.size} bytes)`);
  for (const t of raws) {
    const start = dataOffset + t.rel;
    if (start + t.bytes > fileSize) {
      r.fail(t.name, `data [${start}, ${start + t.bytes}) (offset ${t.rel} in the data section, ${t.bytes} bytes of ${t.typeName}) extends past the end of the file (${r.size} bytes)`);
    }
  }
  const sorted = [...raws].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.rel < a.rel + a.bytes) r.fail(b.name, `data [${b.rel}, ${b.rel + b.bytes}) overlaps tensor "${a.name}" [${a.rel}, ${a.rel + a.bytes}) in the data section`);
  }

  const tensors = new Map<string, GgufTensorInfo>();
  for (const t of raws) {
    const ne = t.ne.map(Number);
    tensors.set(t.name, {
      name: t.name,
      ggmlType: t.ggmlType,
      typeName: t.typeName,
      ne,
      shape: [...ne].reverse(),
      offset: Number(dataOffset + t.rel),
      bytes: Number(t.bytes),
      file: path,
    });
  }
  return { path, version, alignment, dataOffset: Number(dataOffset), metadata, tensors };
}

/** IEEE half to number (exact). */
export function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}

/** Q8_0 blocks (f16 scale d, 32 int8 q) to f32: value = f16(d) * q, exact in f32. Writes into `out` (4-byte aligned) when given. */
export function dequantizeQ8_0(src: Buffer, nElements: number, out: Buffer = Buffer.allocUnsafe(nElements * 4)): Buffer {
  const f = new Float32Array(out.buffer, out.byteOffset, nElements);
  const q = new Int8Array(src.buffer, src.byteOffset, src.length);
  const nBlocks = nElements / 32;
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 34;
    const d = f16ToNumber(src[base]! | (src[base + 1]! << 8));
    for (let j = 0; j < 32; j++) f[b * 32 + j] = d * q[base + 2 + j]!;
  }
  return out;
}

/** The tensor as f32/f16/bf16 bytes in row-major order; Q8_0 is dequantized here to f32 (exact: f16 scale x int8). */
export function readGgufTensor(info: GgufTensorInfo): { dtype: 'f32' | 'f16' | 'bf16'; data: Buffer } {
  const direct: Record<string, 'f32' | 'f16' | 'bf16'> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
  const dtype = direct[info.typeName];
  if (dtype) return { dtype, data: readRange(info.file, info.name, info.offset, info.bytes) };
  if (info.typeName === 'Q8_0') {
    const n = info.ne.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(n) || n % 32 !== 0 || (n / 32) * 34 !== info.bytes) {
      throw new LoaderError(info.file, info.name, `Q8_0 tensor info is inconsistent: ne [${info.ne.join(', ')}] with ${info.bytes} bytes`);
    }
    const src = readRange(info.file, info.name, info.offset, info.bytes);
    if (n * 4 > bufferConstants.MAX_LENGTH) throw new LoaderError(info.file, info.name, `dequantized Q8_0 tensor of ${n} elements is too large for one buffer`);
    return { dtype: 'f32', data: dequantizeQ8_0(src, n) };
  }
  throw new LoaderError(info.file, info.name, `type ${info.typeName} is not supported (loadable: F32, F16, BF16, Q8_0)`);
}
