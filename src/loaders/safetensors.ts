// Reader for safetensors files from untrusted sources. The checks follow the reference parser
// (huggingface/safetensors, safetensors/src/tensor.rs: read_metadata and Metadata::validate), and
// add the ones JSON.parse would otherwise hide (duplicate names, unknown fields).
//
// Layout: u64 LE header length N, N bytes of UTF-8 JSON, then the data section. The JSON maps each
// tensor name to {dtype, shape, data_offsets: [begin, end]} relative to the data section, plus an
// optional "__metadata__" map of string to string.
import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { LoaderError } from './errors.js';
import { MAX_JSON_DEPTH, closeQuietly, scanJson, openRegular, readFully, readRange } from './io.js';

export type WeightDtype = 'f32' | 'f16' | 'bf16';

export interface TensorInfo {
  name: string;
  /** The file's dtype name lower-cased: 'f32', 'f16', 'bf16', 'i64', ... */
  dtype: string;
  /** Row-major, outermost first. */
  shape: number[];
  file: string;
  /** Absolute byte offset in file. */
  offset: number;
  bytes: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

/** The reference parser's MAX_HEADER_SIZE. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Element sizes in bytes of the dtypes the reference parser knows. */
export const SAFETENSORS_DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

const ENTRY_FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A short, non-recursive description of a JSON value for messages. */
function describe(v: unknown): string {
  if (Array.isArray(v)) return v.length === 0 ? '[]' : `an array of ${v.length}`;
  if (isPlainObject(v)) return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Parses untrusted JSON text: syntax errors and repeated keys are LoaderErrors. */
function parseJsonStrict(file: string, text: string, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new LoaderError(file, null, `${what} is not valid JSON: ${(e as Error).message}`);
  }
  const dup = scanJson(text);
  if (dup && 'tooDeep' in dup) throw new LoaderError(file, null, `${what} nests arrays/objects deeper than ${MAX_JSON_DEPTH} levels`);
  if (dup) {
    throw new LoaderError(file, dup.path === '' ? dup.key : dup.path, dup.path === '' ? `appears more than once in the ${what}` : `field "${dup.key}" appears more than once`);
  }
  return value;
}

export function readSafetensorsHeader(path: string): SafetensorsFile {
  const { fd, size } = openRegular(path);
  let text: string;
  let headerLen: number;
  try {
    if (size < 8) throw new LoaderError(path, null, `file is ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, path, 'header length', lenBuf, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) {
      throw new LoaderError(path, 'header length', `${n} bytes exceeds the limit of ${MAX_HEADER_BYTES}`);
    }
    headerLen = Number(n);
    if (headerLen > size - 8) {
      throw new LoaderError(path, 'header length', `${headerLen} bytes exceeds the ${size - 8} bytes after the length field`);
    }
    const hdr = Buffer.alloc(headerLen);
    readFully(fd, path, 'header', hdr, headerLen, 8);
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(hdr);
    } catch {
      throw new LoaderError(path, 'header', 'is not valid UTF-8');
    }
  } finally {
    closeQuietly(fd);
  }

  if (!text.startsWith('{')) throw new LoaderError(path, 'header', 'does not start with "{" (the header must be a JSON object)');
  const root = parseJsonStrict(path, text, 'header');
  if (!isPlainObject(root)) throw new LoaderError(path, 'header', 'is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  const metadata: Record<string, string> = {};
  type Entry = { name: string; dtype: string; shape: number[]; begin: number; end: number };
  const entries: Entry[] = [];

  for (const [name, raw] of Object.entries(root)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (!isPlainObject(raw)) throw new LoaderError(path, '__metadata__', `must be a map of string to string, got ${describe(raw)}`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw new LoaderError(path, `__metadata__.${k}`, `value must be a string, got ${describe(v)}`);
        // defineProperty: a key named __proto__ is data here, not the prototype.
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    if (!isPlainObject(raw)) throw new LoaderError(path, name, `entry must be an object with dtype, shape and data_offsets, got ${describe(raw)}`);
    for (const k of Object.keys(raw)) {
      if (!(ENTRY_FIELDS as readonly string[]).includes(k)) throw new LoaderError(path, name, `unknown field "${k}" (allowed: ${ENTRY_FIELDS.join(', ')})`);
    }
    for (const k of ENTRY_FIELDS) {
      if (!Object.hasOwn(raw, k)) throw new LoaderError(path, name, `missing field "${k}"`);
    }
    const dtype = raw.dtype;
    if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_SIZES, dtype)) {
      throw new LoaderError(path, name, `unknown dtype ${describe(dtype)} (allowed: ${Object.keys(SAFETENSORS_DTYPE_SIZES).join(', ')})`);
    }
    const shape = raw.shape;
    if (!Array.isArray(shape)) throw new LoaderError(path, name, `shape must be an array of non-negative integers, got ${describe(shape)}`);
    shape.forEach((d, i) => {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        throw new LoaderError(path, name, `shape[${i}] is ${describe(d)}, not a non-negative safe integer`);
      }
    });
    const offs = raw.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2) throw new LoaderError(path, name, `data_offsets must be [begin, end], got ${describe(offs)}`);
    offs.forEach((o, i) => {
      if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) {
        throw new LoaderError(path, name, `data_offsets[${i}] is ${describe(o)}, not a non-negative safe integer`);
      }
    });
    const [begin, end] = offs as [number, number];
    if (begin > end) throw new LoaderError(path, name, `data_offsets [${begin}, ${end}] has begin > end`);
    // Overflow-safe: the element count and byte size are computed exactly.
    let nbytes = BigInt(SAFETENSORS_DTYPE_SIZES[dtype]!);
    for (const d of shape as number[]) nbytes *= BigInt(d);
    if (nbytes !== BigInt(end - begin)) {
      throw new LoaderError(path, name, `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape [${(shape as number[]).join(', ')}] needs ${nbytes}`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  let prev: Entry | null = null;
  for (const e of entries) {
    if (e.begin !== expected) {
      throw new LoaderError(
        path,
        e.name,
        e.begin < expected
          ? `data_offsets [${e.begin}, ${e.end}] overlap ${prev ? `"${prev.name}" [${prev.begin}, ${prev.end}]` : 'the previous tensor'}`
          : `data_offsets [${e.begin}, ${e.end}] leave a gap: expected begin ${expected}${prev ? ` (end of "${prev.name}")` : ' (start of the data section)'}`,
      );
    }
    expected = e.end;
    prev = e;
  }
  if (expected !== dataSize) {
    throw new LoaderError(
      path,
      prev ? prev.name : null,
      expected > dataSize
        ? `data ends at ${expected} but the data section has only ${dataSize} bytes (file truncated?)`
        : `the tensors cover ${expected} bytes but the data section has ${dataSize} (trailing bytes after the last tensor)`,
    );
  }

  const tensors = new Map<string, TensorInfo>();
  for (const e of entries) {
    tensors.set(e.name, { name: e.name, dtype: e.dtype.toLowerCase(), shape: e.shape, file: path, offset: dataStart + e.begin, bytes: e.end - e.begin });
  }
  return { path, metadata, tensors };
}

/** Shard filenames in an index must name a plain file inside the model directory. */
function checkShardName(index: string, tensor: string, shard: unknown): string {
  if (typeof shard !== 'string') throw new LoaderError(index, tensor, `shard must be a filename string, got ${describe(shard)}`);
  if (shard === '' || shard === '.' || shard === '..' || shard.includes('/') || shard.includes('\\') || shard.includes('\0') || basename(shard) !== shard) {
    throw new LoaderError(index, tensor, `shard ${describe(shard)} is not a plain filename inside the model directory`);
  }
  return shard;
}

const INDEX_NAME = 'model.safetensors.index.json';
const SINGLE_NAME = 'model.safetensors';

function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A model directory: model.safetensors, or model.safetensors.index.json + its shards. */
export function openSafetensorsDir(dir: string): Map<string, TensorInfo> {
  const indexPath = join(dir, INDEX_NAME);
  if (!exists(indexPath)) {
    const single = join(dir, SINGLE_NAME);
    if (!exists(single)) throw new LoaderError(dir, null, `no ${SINGLE_NAME} or ${INDEX_NAME} in the directory`);
    return readSafetensorsHeader(single).tensors;
  }

  const { fd, size } = openRegular(indexPath);
  closeQuietly(fd);
  if (size > MAX_HEADER_BYTES) throw new LoaderError(indexPath, null, `index is ${size} bytes, more than the limit of ${MAX_HEADER_BYTES}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(indexPath));
  } catch (e) {
    throw new LoaderError(indexPath, null, e instanceof TypeError ? 'is not valid UTF-8' : `cannot read: ${(e as Error).message}`);
  }
  const root = parseJsonStrict(indexPath, text, 'index');
  if (!isPlainObject(root)) throw new LoaderError(indexPath, null, 'is not a JSON object');
  const weightMap = root.weight_map;
  if (!isPlainObject(weightMap)) throw new LoaderError(indexPath, 'weight_map', `must be an object mapping tensor names to shard filenames, got ${describe(weightMap)}`);

  const byShard = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(weightMap)) {
    const s = checkShardName(indexPath, name, shard);
    let set = byShard.get(s);
    if (!set) byShard.set(s, (set = new Set()));
    set.add(name);
  }
  for (const [shard, names] of byShard) {
    const p = join(dir, shard);
    if (!exists(p)) throw new LoaderError(indexPath, names.values().next().value!, `shard ${shard} does not exist in ${dir}`);
  }

  const out = new Map<string, TensorInfo>();
  const foundIn = new Map<string, string>();
  for (const [shard, names] of byShard) {
    const p = join(dir, shard);
    const file = readSafetensorsHeader(p);
    for (const [name, info] of file.tensors) {
      const other = foundIn.get(name);
      if (other !== undefined) throw new LoaderError(p, name, `tensor is also in shard ${other}`);
      foundIn.set(name, shard);
      if (!names.has(name)) {
        const listed = (weightMap as Record<string, unknown>)[name];
        throw new LoaderError(
          p,
          name,
          Object.hasOwn(weightMap, name) ? `tensor is in this shard but ${INDEX_NAME} puts it in ${describe(listed)}` : `tensor is in this shard but not in the weight_map of ${INDEX_NAME}`,
        );
      }
      out.set(name, info);
    }
    for (const name of names) {
      if (!file.tensors.has(name)) throw new LoaderError(indexPath, name, `weight_map puts the tensor in ${shard}, which has no such tensor`);
    }
  }
  return out;
}

/** Exactly info.bytes bytes read from info.file at info.offset (one tensor at a time: never the whole file). */
export function readTensorBytes(info: TensorInfo): Buffer {
  return readRange(info.file, info.name, info.offset, info.bytes);
}
