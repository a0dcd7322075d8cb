import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSafetensorsDir, readSafetensorsHeader, readTensorBytes } from '../../src/loaders/safetensors.js';
import { expectLoaderError, f32, patch, tmp, u16 } from './util.js';
import { numberToBf16, numberToF16, safetensorsBytes, writeSafetensors, writeShardedSafetensors, type SafetensorsTensor } from './writers.js';

function sample(): SafetensorsTensor[] {
  return [
    { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [3, 2], data: f32([1, 2, 3, 4, 5, -6.5]) },
    { name: 'model.norm.weight', dtype: 'F16', shape: [4], data: u16([1, 0.5, -2, 3].map(numberToF16)) },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [2, 1, 2], data: u16([1, -1, 0.25, 8].map(numberToBf16)) },
    { name: 'position_ids', dtype: 'I64', shape: [2], data: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]) },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) },
  ];
}

/** A file from a header object (with correct length) and a data section. */
function rawFile(header: string | Record<string, unknown>, data: Uint8Array = new Uint8Array(0)): string {
  const p = join(tmp(), 'model.safetensors');
  writeFileSync(p, safetensorsBytes(header, data));
  return p;
}

const F32_2 = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

describe('safetensors round trip', () => {
  it('reads names, dtypes, shapes, offsets, metadata and bytes of a single file', () => {
    const p = join(tmp(), 'model.safetensors');
    const tensors = sample();
    writeSafetensors(p, tensors, { format: 'pt' });
    const f = readSafetensorsHeader(p);
    expect(f.path).toBe(p);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect([...f.tensors.keys()].sort()).toEqual(tensors.map((t) => t.name).sort());
    const file = readFileSync(p);
    for (const t of tensors) {
      const info = f.tensors.get(t.name)!;
      expect(info.dtype).toBe(t.dtype.toLowerCase());
      expect(info.shape).toEqual(t.shape);
      expect(info.file).toBe(p);
      expect(info.bytes).toBe(t.data.length);
      expect(file.subarray(info.offset, info.offset + info.bytes).equals(Buffer.from(t.data))).toBe(true);
      expect(readTensorBytes(info).equals(Buffer.from(t.data))).toBe(true);
    }
  });

  it('opens a directory with model.safetensors', () => {
    const dir = tmp();
    writeSafetensors(join(dir, 'model.safetensors'), sample());
    const m = openSafetensorsDir(dir);
    expect(m.size).toBe(5);
    expect(readTensorBytes(m.get('lm_head.weight')!).equals(Buffer.from(sample()[2]!.data))).toBe(true);
  });

  it('opens a sharded directory through model.safetensors.index.json', () => {
    const dir = tmp();
    const tensors = sample();
    const shards = writeShardedSafetensors(dir, tensors, 3);
    expect(shards).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    const m = openSafetensorsDir(dir);
    expect([...m.keys()].sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      const info = m.get(t.name)!;
      expect(info.shape).toEqual(t.shape);
      expect(readTensorBytes(info).equals(Buffer.from(t.data))).toBe(true);
    }
    expect(new Set([...m.values()].map((i) => i.file)).size).toBe(3);
  });

  it('accepts an empty file (no tensors) and offsets in any order', () => {
    expect(readSafetensorsHeader(rawFile({})).tensors.size).toBe(0);
    const data = new Uint8Array(16);
    const f = readSafetensorsHeader(rawFile({ b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] }, a: F32_2 }, data));
    expect(f.tensors.get('b')!.offset - f.tensors.get('a')!.offset).toBe(8);
  });
});

describe('safetensors corruption: one LoaderError per check', () => {
  it('missing file', () => {
    const p = join(tmp(), 'nope.safetensors');
    expectLoaderError(() => readSafetensorsHeader(p), p, null, /cannot open: ENOENT/);
  });

  it('file shorter than 8 bytes', () => {
    const p = join(tmp(), 'x.safetensors');
    writeFileSync(p, Buffer.from([1, 2, 3]));
    expectLoaderError(() => readSafetensorsHeader(p), p, null, /3 bytes, shorter than the 8-byte header length/);
  });

  it('header length over 100,000,000', () => {
    const p = rawFile({});
    patch(p, (b) => void b.writeBigUInt64LE(100_000_001n, 0));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'header length', /100000001 bytes exceeds the limit of 100000000/);
    patch(p, (b) => void b.writeBigUInt64LE(0xffffffffffffffffn, 0));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'header length', /18446744073709551615 bytes exceeds the limit/);
  });

  it('header length past the end of the file', () => {
    const p = rawFile({ a: F32_2 }, new Uint8Array(8));
    const size = readFileSync(p).length;
    patch(p, (b) => void b.writeBigUInt64LE(BigInt(size), 0));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'header length', new RegExp(`${size} bytes exceeds the ${size - 8} bytes after the length field`));
  });

  it('header not UTF-8', () => {
    const p = rawFile('{"a":"\u00e9"}');
    patch(p, (b) => void b.fill(0xff, 15, 17));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'header', /not valid UTF-8/);
  });

  it('header not JSON', () => {
    const p = rawFile('{"a": {"dtype": "F32",');
    expectLoaderError(() => readSafetensorsHeader(p), p, null, /header is not valid JSON/);
  });

  it('header not a JSON object', () => {
    const p = rawFile('[1, 2]');
    expectLoaderError(() => readSafetensorsHeader(p), p, 'header', /does not start with "\{"/);
  });

  it('header nested deeper than the reference parser allows', () => {
    const p = rawFile(`{"a":${'['.repeat(200)}${']'.repeat(200)}}`);
    expectLoaderError(() => readSafetensorsHeader(p), p, null, /deeper than 128 levels/);
  });

  it('__metadata__ not a map of string to string', () => {
    const m = rawFile({ __metadata__: { format: 1 } });
    expectLoaderError(() => readSafetensorsHeader(m), m, '__metadata__.format', /must be a string, got 1/);
    const p = rawFile({ __metadata__: ['pt'] });
    expectLoaderError(() => readSafetensorsHeader(p), p, '__metadata__', /must be a map of string to string/);
  });

  it('tensor entry not an object', () => {
    const p = rawFile({ w: 'F32' });
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /entry must be an object/);
  });

  it('unknown dtype', () => {
    const p = rawFile({ w: { dtype: 'Q8_0', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /unknown dtype "Q8_0" \(allowed: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64\)/);
  });

  it('shape not an array of non-negative safe integers', () => {
    for (const [shape, msg] of [
      [[2, -1], /shape\[1\] is -1, not a non-negative safe integer/],
      [[9007199254740992], /shape\[0\] is 9007199254740992/],
      [[1.5], /shape\[0\] is 1.5/],
      [['2'], /shape\[0\] is "2"/],
      [5, /shape must be an array/],
    ] as const) {
      const p = rawFile({ w: { dtype: 'F32', shape, data_offsets: [0, 8] } }, new Uint8Array(8));
      expectLoaderError(() => readSafetensorsHeader(p), p, 'w', msg);
    }
  });

  it('data_offsets not [begin, end] of non-negative safe integers', () => {
    const p = rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0] } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /data_offsets must be \[begin, end\]/);
    const q = rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 18446744073709551615] } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(q), q, 'w', /data_offsets\[1\] is 18446744073709552000, not a non-negative safe integer/);
  });

  it('begin > end', () => {
    const p = rawFile({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /data_offsets \[8, 0\] has begin > end/);
  });

  it('byte size disagrees with shape x dtype size', () => {
    const p = rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /hold 8 bytes but F32 shape \[3\] needs 12/);
  });

  it('element count overflow is computed exactly, not wrapped', () => {
    // 2^32 * 2^32 * 4 wraps to 0 in 64-bit arithmetic; here it is exact and disagrees with 0 bytes.
    const p = rawFile({ w: { dtype: 'F32', shape: [4294967296, 4294967296], data_offsets: [0, 0] } });
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /hold 0 bytes but F32 shape \[4294967296, 4294967296\] needs 73786976294838206464/);
  });

  it('first tensor not at offset 0 (gap)', () => {
    const p = rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, new Uint8Array(16));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'w', /leave a gap: expected begin 0 \(start of the data section\)/);
  });

  it('gap between tensors', () => {
    const p = rawFile({ a: F32_2, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, new Uint8Array(20));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'b', /leave a gap: expected begin 8 \(end of "a"\)/);
  });

  it('overlapping tensors', () => {
    const p = rawFile({ a: F32_2, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'b', /overlap "a" \[0, 8\]/);
  });

  it('last end beyond the data section (truncated file)', () => {
    const p = rawFile({ a: F32_2 }, new Uint8Array(8));
    patch(p, (b) => b.subarray(0, b.length - 3));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'a', /data ends at 8 but the data section has only 5 bytes/);
  });

  it('trailing bytes after the last tensor', () => {
    const p = rawFile({ a: F32_2 }, new Uint8Array(12));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'a', /cover 8 bytes but the data section has 12/);
  });

  it('duplicate tensor names (JSON.parse would keep the last)', () => {
    const p = rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'a', /appears more than once in the header/);
  });

  it('duplicate field inside an entry', () => {
    const p = rawFile('{"a":{"dtype":"F32","shape":[2],"dtype":"F16","data_offsets":[0,8]}}', new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'a', /field "dtype" appears more than once/);
  });

  it('unknown extra field in an entry', () => {
    const p = rawFile({ a: { ...F32_2, offset: 0 } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'a', /unknown field "offset" \(allowed: dtype, shape, data_offsets\)/);
  });

  it('missing field in an entry', () => {
    const p = rawFile({ a: { dtype: 'F32', data_offsets: [0, 8] } }, new Uint8Array(8));
    expectLoaderError(() => readSafetensorsHeader(p), p, 'a', /missing field "shape"/);
  });

  it('a file that shrinks after its header was read', () => {
    const p = rawFile({ a: F32_2 }, new Uint8Array(8));
    const info = readSafetensorsHeader(p).tensors.get('a')!;
    patch(p, (b) => b.subarray(0, b.length - 4));
    expectLoaderError(() => readTensorBytes(info), p, 'a', /extends past the end of the file/);
  });
});

describe('safetensors index corruption', () => {
  function sharded(): { dir: string; index: string; map: Record<string, unknown> } {
    const dir = tmp();
    writeShardedSafetensors(dir, sample(), 2);
    const index = join(dir, 'model.safetensors.index.json');
    return { dir, index, map: JSON.parse(readFileSync(index, 'utf8')) as Record<string, unknown> };
  }
  const writeIndex = (index: string, v: unknown): void => writeFileSync(index, typeof v === 'string' ? v : JSON.stringify(v));

  it('directory with no model', () => {
    const dir = tmp();
    expectLoaderError(() => openSafetensorsDir(dir), dir, null, /no model.safetensors or model.safetensors.index.json/);
  });

  it('index not JSON', () => {
    const { dir, index } = sharded();
    writeIndex(index, '{"weight_map": {');
    expectLoaderError(() => openSafetensorsDir(dir), index, null, /index is not valid JSON/);
  });

  it('weight_map missing or not an object', () => {
    const { dir, index } = sharded();
    writeIndex(index, { metadata: {} });
    expectLoaderError(() => openSafetensorsDir(dir), index, 'weight_map', /must be an object mapping tensor names to shard filenames/);
  });

  it('duplicate name in weight_map', () => {
    const { dir, index } = sharded();
    writeIndex(index, '{"weight_map":{"a":"model-00001-of-00002.safetensors","a":"model-00002-of-00002.safetensors"}}');
    expectLoaderError(() => openSafetensorsDir(dir), index, 'weight_map', /field "a" appears more than once/);
  });

  it('shard filename not a plain basename', () => {
    for (const bad of ['../model.safetensors', 'sub/model.safetensors', '..', '', '/etc/passwd', 'a\\b']) {
      const { dir, index, map } = sharded();
      writeIndex(index, { ...map, weight_map: { ...(map.weight_map as object), 'lm_head.weight': bad } });
      expectLoaderError(() => openSafetensorsDir(dir), index, 'lm_head.weight', /is not a plain filename inside the model directory/);
    }
  });

  it('shard missing', () => {
    const { dir, index, map } = sharded();
    writeIndex(index, { ...map, weight_map: { ...(map.weight_map as object), 'lm_head.weight': 'model-00009-of-00009.safetensors' } });
    expectLoaderError(() => openSafetensorsDir(dir), index, 'lm_head.weight', /shard model-00009-of-00009.safetensors does not exist/);
  });

  it('tensor in a shard but not in weight_map', () => {
    const { dir, index, map } = sharded();
    const wm = { ...(map.weight_map as Record<string, string>) };
    delete wm['lm_head.weight'];
    writeIndex(index, { weight_map: wm });
    expectLoaderError(() => openSafetensorsDir(dir), join(dir, 'model-00001-of-00002.safetensors'), 'lm_head.weight', /not in the weight_map/);
  });

  it('weight_map names a tensor its shard lacks', () => {
    const { dir, index, map } = sharded();
    writeIndex(index, { weight_map: { ...(map.weight_map as object), ghost: 'model-00002-of-00002.safetensors' } });
    expectLoaderError(() => openSafetensorsDir(dir), index, 'ghost', /puts the tensor in model-00002-of-00002.safetensors, which has no such tensor/);
  });

  it('weight_map puts a tensor in the wrong shard', () => {
    const { dir, index, map } = sharded();
    writeIndex(index, { weight_map: { ...(map.weight_map as object), 'lm_head.weight': 'model-00002-of-00002.safetensors' } });
    expectLoaderError(() => openSafetensorsDir(dir), join(dir, 'model-00001-of-00002.safetensors'), 'lm_head.weight', /index.json puts it in "model-00002-of-00002.safetensors"/);
  });

  it('a tensor in two shards', () => {
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    const t = sample();
    writeSafetensors(join(dir, 's1.safetensors'), [t[0]!, t[1]!]);
    writeSafetensors(join(dir, 's2.safetensors'), [t[1]!, t[2]!]);
    writeIndex(join(dir, 'model.safetensors.index.json'), {
      weight_map: { [t[0]!.name]: 's1.safetensors', [t[1]!.name]: 's1.safetensors', [t[2]!.name]: 's2.safetensors' },
    });
    expectLoaderError(() => openSafetensorsDir(dir), join(dir, 's2.safetensors'), t[1]!.name, /tensor is also in shard s1.safetensors/);
  });

  it('a corrupt shard is reported against the shard', () => {
    const { dir } = sharded();
    const shard = join(dir, 'model-00002-of-00002.safetensors');
    patch(shard, (b) => b.subarray(0, b.length - 1));
    expect(() => openSafetensorsDir(dir)).toThrow(shard);
  });
});
