// Seeded mutation fuzzer for the weight-file loaders: npm run fuzz -- --iterations N [--seed S]
//
// Each iteration takes one valid seed file (safetensors; GGUF v3 and v2 with metadata of every
// value type and F32/F16/BF16/Q8_0 tensors), applies 1-3 mutations, writes the mutant to one
// reused temp file, parses it and reads every tensor it lists. The outcome must be success or a
// LoaderError; anything else (another exception type, a case slower than the time limit, a jump
// in memory) is a failure, reported with the seed and iteration that replay it
// (--seed S --start I --iterations 1): iteration i's mutations depend only on (seed, i).
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { LoaderError } from './errors.js';
import { GGUF_TYPE, GGML_TYPE_ID, readGguf, readGgufTensor } from './gguf.js';
import { readSafetensorsHeader, readTensorBytes } from './safetensors.js';
import { buildGguf, buildSafetensors, numberToBf16, numberToF16, quantizeQ8_0, safetensorsBytes, type GgufKv, type GgufLayout } from './writers.js';
import { mulberry32 } from '../random.js';

export interface FuzzFailure {
  seed: number;
  iteration: number;
  seedFile: string;
  mutations: string[];
  error: string;
  /** The mutant, base64, when it is small (the seeds are a few KB). */
  mutant: string;
}

export interface FuzzResult {
  iterations: number;
  ok: number;
  rejected: number;
  failures: FuzzFailure[];
  ms: number;
  /** How often each kind of rejection happened (the LoaderError's `what` with numbers and quoted parts blanked). */
  reasons: Record<string, number>;
}

export interface FuzzOptions {
  iterations: number;
  seed?: number;
  /** First iteration (to replay one: start = its iteration, iterations = 1). */
  start?: number;
  /** Per-case limit in ms; a slower case is a failure. */
  caseLimitMs?: number;
  /** Resident-memory growth in one case (bytes) counted as a blowup. */
  memLimitBytes?: number;
  log?: (line: string) => void;
  /** Where failing mutants are written (optional). */
  saveDir?: string;
}

// ---------------------------------------------------------------- PRNG

/** mulberry32, seeded from (seed, iteration) through a splitmix32-style hash. */
function rngFor(seed: number, iteration: number): () => number {
  let h = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(iteration + 0x632be5ab, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return mulberry32(h ^ (h >>> 16));
}

type Rng = () => number;
const int = (r: Rng, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)]!;

// ---------------------------------------------------------------- seeds

interface Seed {
  name: string;
  kind: 'safetensors' | 'gguf';
  bytes: Buffer;
  /** Byte offsets of u32 and u64 header fields worth hitting with boundary values. */
  u32Fields: number[];
  u64Fields: number[];
  /** For safetensors: the header object and data, for structured edits. */
  header?: Record<string, unknown>;
  data?: Buffer;
}

function f32Bytes(xs: number[]): Buffer {
  const b = Buffer.alloc(xs.length * 4);
  xs.forEach((x, i) => b.writeFloatLE(x, i * 4));
  return b;
}
function u16Bytes(xs: number[]): Buffer {
  const b = Buffer.alloc(xs.length * 2);
  xs.forEach((x, i) => b.writeUInt16LE(x, i * 2));
  return b;
}

function safetensorsSeed(): Seed {
  const tensors = [
    { name: 'a.f32', dtype: 'F32', shape: [2, 3], data: f32Bytes([1, -2, 3.5, 0, 1e-3, -7]) },
    { name: 'b.f16', dtype: 'F16', shape: [4], data: u16Bytes([0.5, 1, -2, 65504].map(numberToF16)) },
    { name: 'c.bf16', dtype: 'BF16', shape: [2, 2], data: u16Bytes([1, 2, 3, -4].map(numberToBf16)) },
    { name: 'd.i64', dtype: 'I64', shape: [2], data: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]) },
    { name: 'e.empty', dtype: 'U8', shape: [0, 3], data: Buffer.alloc(0) },
  ];
  const bytes = buildSafetensors(tensors, { format: 'pt', note: 'seed' });
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  return { name: 'safetensors', kind: 'safetensors', bytes, u32Fields: [0, 4], u64Fields: [0], header, data: bytes.subarray(8 + headerLen) };
}

export function ggufSeedMetadata(): GgufKv[] {
  const T = GGUF_TYPE;
  return [
    { key: 'general.architecture', type: T.STRING, value: 'llama' },
    { key: 'k.u8', type: T.UINT8, value: 200 },
    { key: 'k.i8', type: T.INT8, value: -5 },
    { key: 'k.u16', type: T.UINT16, value: 60000 },
    { key: 'k.i16', type: T.INT16, value: -30000 },
    { key: 'k.u32', type: T.UINT32, value: 4000000000 },
    { key: 'k.i32', type: T.INT32, value: -2000000000 },
    { key: 'k.f32', type: T.FLOAT32, value: 0.5 },
    { key: 'k.bool', type: T.BOOL, value: true },
    { key: 'k.u64', type: T.UINT64, value: 1n << 40n },
    { key: 'k.i64', type: T.INT64, value: -(1n << 40n) },
    { key: 'k.f64', type: T.FLOAT64, value: 1e-300 },
    { key: 'k.arr.u8', type: T.ARRAY, value: { type: T.UINT8, values: [1, 2, 3] } },
    { key: 'k.arr.i32', type: T.ARRAY, value: { type: T.INT32, values: [-1, 0, 1] } },
    { key: 'k.arr.f32', type: T.ARRAY, value: { type: T.FLOAT32, values: [0.25, -1] } },
    { key: 'k.arr.bool', type: T.ARRAY, value: { type: T.BOOL, values: [true, false] } },
    { key: 'k.arr.str', type: T.ARRAY, value: { type: T.STRING, values: ['<s>', '</s>', 'é'] } },
    { key: 'k.arr.u64', type: T.ARRAY, value: { type: T.UINT64, values: [0n, 1n] } },
    { key: 'k.arr.f64', type: T.ARRAY, value: { type: T.FLOAT64, values: [1.5] } },
    { key: 'k.arr.nested', type: T.ARRAY, value: { type: T.ARRAY, values: [{ type: T.INT16, values: [1, 2] }, { type: T.STRING, values: ['x'] }] } },
  ];
}

export function ggufSeedTensors(): { name: string; ggmlType: number; ne: number[]; data: Uint8Array }[] {
  const q = new Float32Array(64);
  for (let i = 0; i < 64; i++) q[i] = Math.sin(i) * (i % 7);
  return [
    { name: 'blk.0.f32', ggmlType: GGML_TYPE_ID.F32!, ne: [4, 2], data: f32Bytes([1, 2, 3, 4, 5, 6, 7, 8]) },
    { name: 'blk.0.f16', ggmlType: GGML_TYPE_ID.F16!, ne: [8], data: u16Bytes([1, 2, 3, 4, -1, -2, 0.5, 0].map(numberToF16)) },
    { name: 'blk.0.bf16', ggmlType: GGML_TYPE_ID.BF16!, ne: [2, 1, 2], data: u16Bytes([1, -1, 2, -2].map(numberToBf16)) },
    { name: 'blk.0.q8_0', ggmlType: GGML_TYPE_ID.Q8_0!, ne: [32, 2], data: quantizeQ8_0(q) },
  ];
}

function ggufSeed(version: 2 | 3, alignment: number | undefined): Seed {
  const { bytes, layout } = buildGguf({ version, alignment, metadata: ggufSeedMetadata(), tensors: ggufSeedTensors() });
  return { name: `gguf-v${version}${alignment ? `-align${alignment}` : ''}`, kind: 'gguf', bytes, ...ggufFields(layout) };
}

function ggufFields(l: GgufLayout): { u32Fields: number[]; u64Fields: number[] } {
  const u32 = [l.version];
  const u64 = [l.nTensors, l.nKv];
  for (const kv of l.kv) {
    u64.push(kv.keyLen, ...kv.arrayCounts);
    u32.push(kv.type);
    if (kv.key === 'general.alignment') u32.push(kv.value);
  }
  for (const t of l.tensors) {
    u64.push(t.nameLen, ...t.ne, t.offset);
    u32.push(t.nDims, t.type);
  }
  return { u32Fields: u32, u64Fields: u64 };
}

// ---------------------------------------------------------------- mutations

const U32_BOUNDARY = [0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32, 33, 64, 255, 256, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const U64_BOUNDARY = [0n, 1n, 2n, 8n, 31n, 32n, 63n, 64n, 255n, 4096n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 1n << 53n, (1n << 53n) + 1n, 1n << 62n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, (1n << 64n) - 32n];
const INTERESTING_BYTES = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2c, 0x5b, 0x5d, 0x7b, 0x7d, 0x30, 0x39];
const JSON_NUMBERS = ['0', '1', '-1', '2', '3', '8', '4294967296', '9007199254740991', '9007199254740992', '9007199254740993', '18446744073709551615', '18446744073709551616', '1e308', '1e400', '1.5', '-0', 'null', '"1"', '[]', '{}'];

function boundaryU64(r: Rng, fileSize: number): bigint {
  return r() < 0.2 ? BigInt(int(r, fileSize * 2 + 1)) : pick(r, U64_BOUNDARY);
}

/** Replaces one element of an array or a field of an object with a hostile value. */
function mutateSafetensorsHeader(r: Rng, seed: Seed, notes: string[]): Buffer {
  const header = structuredClone(seed.header!) as Record<string, Record<string, unknown>>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = pick(r, names);
  const entry = header[name]!;
  let raw: string | null = null;
  const choice = int(r, 10);
  const numberLike = (): unknown => JSON.parse(pick(r, JSON_NUMBERS));
  switch (choice) {
    case 0:
      entry.dtype = pick(r, ['F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'F64', 'f32', 'Q8_0', '', 7, null]);
      notes.push(`${name}.dtype=${JSON.stringify(entry.dtype)}`);
      break;
    case 1: {
      const shape = [...(entry.shape as unknown[])];
      const op = int(r, 3);
      if (op === 0 && shape.length) shape[int(r, shape.length)] = numberLike();
      else if (op === 1) shape.push(numberLike());
      else shape.pop();
      entry.shape = shape;
      notes.push(`${name}.shape=${JSON.stringify(shape)}`);
      break;
    }
    case 2: {
      const offs = [...(entry.data_offsets as unknown[])];
      offs[int(r, 2)] = r() < 0.5 ? numberLike() : (offs[int(r, 2)] as number) + int(r, 9) - 4;
      entry.data_offsets = r() < 0.1 ? offs.slice(0, 1) : offs;
      notes.push(`${name}.data_offsets=${JSON.stringify(entry.data_offsets)}`);
      break;
    }
    case 3:
      entry[pick(r, ['extra', 'offset', 'dtype '])] = 1;
      notes.push(`${name}: extra field`);
      break;
    case 4:
      delete entry[pick(r, ['dtype', 'shape', 'data_offsets'])];
      notes.push(`${name}: field removed`);
      break;
    case 5: {
      // A duplicate tensor name: JSON.parse would keep the last silently.
      const text = JSON.stringify(header);
      const other = pick(r, names);
      raw = `${text.slice(0, -1)},${JSON.stringify(name)}:${JSON.stringify(header[other])}}`;
      notes.push(`duplicate name ${name}`);
      break;
    }
    case 6:
      header.__metadata__ = pick(r, [{ a: 1 }, 'x', [], { a: 'b' }, null]) as Record<string, unknown>;
      notes.push('__metadata__ replaced');
      break;
    case 7: {
      const a = header[pick(r, names)]!;
      const b = header[pick(r, names)]!;
      [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
      notes.push('offsets swapped');
      break;
    }
    case 8:
      raw = pick(r, ['[]', '{', '{"a":', 'null', '{"a":{}}', `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`, '"x"', '{"\\ud800":1}', '\uFEFF{}']);
      notes.push(`header=${raw.slice(0, 20)}`);
      break;
    default: {
      delete header[name];
      notes.push(`${name} removed`);
      break;
    }
  }
  return safetensorsBytes(raw ?? header, seed.data!);
}

function mutateBytes(r: Rng, seed: Seed, input: Buffer, notes: string[]): Buffer {
  let b = Buffer.from(input);
  const n = b.length;
  const at = (): number => int(r, Math.max(1, n));
  switch (int(r, 10)) {
    case 0: {
      const p = at();
      const bit = int(r, 8);
      if (p < n) b[p]! ^= 1 << bit;
      notes.push(`flip ${p}:${bit}`);
      return b;
    }
    case 1: {
      const p = at();
      const v = pick(r, INTERESTING_BYTES);
      if (p < n) b[p] = v;
      notes.push(`set ${p}=${v}`);
      return b;
    }
    case 2: {
      const targeted = r() < 0.7 && seed.u32Fields.length > 0;
      const p = targeted ? pick(r, seed.u32Fields) : at();
      const v = pick(r, U32_BOUNDARY);
      if (p + 4 <= n) b.writeUInt32LE(v, p);
      notes.push(`u32 ${p}=${v}${targeted ? ' (field)' : ''}`);
      return b;
    }
    case 3:
    case 4: {
      const targeted = r() < 0.8 && seed.u64Fields.length > 0;
      const p = targeted ? pick(r, seed.u64Fields) : at();
      const v = boundaryU64(r, n);
      if (p + 8 <= n) b.writeBigUInt64LE(v, p);
      notes.push(`u64 ${p}=${v}${targeted ? ' (field)' : ''}`);
      return b;
    }
    case 5: {
      const len = int(r, n + 1);
      notes.push(`truncate ${len}`);
      return b.subarray(0, len);
    }
    case 6: {
      const p = at();
      const len = 1 + int(r, 64);
      const run = Buffer.alloc(len, r() < 0.5 ? pick(r, INTERESTING_BYTES) : int(r, 256));
      notes.push(`insert ${p}+${len}`);
      return Buffer.concat([b.subarray(0, p), run, b.subarray(p)]);
    }
    case 7: {
      const p = at();
      const len = 1 + int(r, 64);
      notes.push(`delete ${p}+${len}`);
      return Buffer.concat([b.subarray(0, p), b.subarray(Math.min(n, p + len))]);
    }
    case 8: {
      const src = at();
      const len = 1 + int(r, 128);
      const dst = at();
      const region = Buffer.from(b.subarray(src, Math.min(n, src + len)));
      if (r() < 0.5) {
        notes.push(`dup-insert ${src}+${len}@${dst}`);
        return Buffer.concat([b.subarray(0, dst), region, b.subarray(dst)]);
      }
      region.copy(b, dst);
      notes.push(`dup-overwrite ${src}+${len}@${dst}`);
      return b;
    }
    default: {
      // A random u64 position overwritten with a small-to-huge value.
      const p = at();
      const v = BigInt(int(r, 1 << 30)) << BigInt(int(r, 34));
      if (p + 8 <= n) b.writeBigUInt64LE(BigInt.asUintN(64, v), p);
      notes.push(`u64 ${p}=${v}`);
      b = Buffer.from(b);
      return b;
    }
  }
}

function mutate(r: Rng, seed: Seed, notes: string[]): Buffer {
  let bytes = seed.bytes;
  if (seed.kind === 'safetensors' && r() < 0.45) bytes = mutateSafetensorsHeader(r, seed, notes);
  const count = bytes === seed.bytes ? 1 + int(r, 3) : int(r, 2);
  for (let i = 0; i < count; i++) bytes = mutateBytes(r, seed, bytes, notes);
  return bytes;
}

// ---------------------------------------------------------------- the loop

/** Parses the file and reads every tensor it lists. */
function exercise(kind: Seed['kind'], file: string): void {
  if (kind === 'safetensors') {
    const f = readSafetensorsHeader(file);
    for (const t of f.tensors.values()) {
      const b = readTensorBytes(t);
      if (b.length !== t.bytes) throw new Error(`readTensorBytes returned ${b.length} bytes for ${t.name}, expected ${t.bytes}`);
    }
  } else {
    const f = readGguf(file);
    for (const t of f.tensors.values()) {
      try {
        readGgufTensor(t);
      } catch (e) {
        // A tensor of a type we cannot load is a legitimate outcome for a parsed file.
        if (e instanceof LoaderError && / is not supported /.test(e.what)) continue;
        throw e;
      }
    }
  }
}

export function buildSeeds(): Seed[] {
  return [safetensorsSeed(), ggufSeed(3, undefined), ggufSeed(2, 16), ggufSeed(3, 64)];
}

export function fuzz(opts: FuzzOptions): FuzzResult {
  const seed = (opts.seed ?? 1) >>> 0;
  const start = opts.start ?? 0;
  const caseLimit = opts.caseLimitMs ?? 2000;
  const memLimit = opts.memLimitBytes ?? 512 * 1024 * 1024;
  const log = opts.log ?? (() => {});
  const seeds = buildSeeds();
  const dir = mkdtempSync(join(tmpdir(), 'greta-fuzz-'));
  const file = join(dir, 'mutant');
  const res: FuzzResult = { iterations: opts.iterations, ok: 0, rejected: 0, failures: [], ms: 0, reasons: {} };
  const t0 = performance.now();
  try {
    for (let k = 0; k < opts.iterations; k++) {
      const i = start + k;
      const r = rngFor(seed, i);
      const s = seeds[i % seeds.length]!;
      const notes: string[] = [];
      const mutant = mutate(r, s, notes);
      writeFileSync(file, mutant);
      const rss0 = process.memoryUsage.rss();
      const c0 = performance.now();
      let error: string | null = null;
      try {
        exercise(s.kind, file);
        res.ok++;
      } catch (e) {
        if (e instanceof LoaderError && e.file === file && e.message.startsWith(file)) {
          res.rejected++;
          const reason = e.what.replace(/(not valid JSON):.*/, '$1').replace(/"[^"]*"/g, '"…"').replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, 'N').slice(0, 90);
          res.reasons[reason] = (res.reasons[reason] ?? 0) + 1;
        }
        else error = e instanceof Error ? `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}` : `non-Error thrown: ${String(e)}`;
      }
      const dt = performance.now() - c0;
      const grew = process.memoryUsage.rss() - rss0;
      if (error === null && dt > caseLimit) error = `case took ${dt.toFixed(0)} ms (limit ${caseLimit} ms)`;
      if (error === null && grew > memLimit) error = `resident memory grew by ${grew} bytes in one case (limit ${memLimit})`;
      if (error !== null) {
        const f: FuzzFailure = { seed, iteration: i, seedFile: s.name, mutations: notes, error, mutant: mutant.length <= 1 << 16 ? mutant.toString('base64') : '' };
        res.failures.push(f);
        log(`FAIL seed=${seed} iteration=${i} (${s.name}; ${notes.join('; ')}): ${error.split('\n')[0]}`);
        if (opts.saveDir) {
          mkdirSync(opts.saveDir, { recursive: true });
          writeFileSync(join(opts.saveDir, `seed${seed}-it${i}-${s.name}`), mutant);
        }
      }
      if ((k + 1) % 1000 === 0) log(`${k + 1}/${opts.iterations}: ok ${res.ok}, rejected ${res.rejected}, failures ${res.failures.length}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  res.ms = performance.now() - t0;
  return res;
}

function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      iterations: { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
      start: { type: 'string', default: '0' },
      'case-limit-ms': { type: 'string', default: '2000' },
      'save-failures': { type: 'string' },
      reasons: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('npm run fuzz -- [--iterations N] [--seed S] [--start I] [--case-limit-ms MS] [--save-failures DIR] [--reasons]\nreplay one case: --seed S --start I --iterations 1');
    return 0;
  }
  const num = (name: string, v: string): number => {
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
      console.error(`--${name}: ${JSON.stringify(v)} is not a non-negative integer`);
      process.exit(2);
    }
    return Number(v);
  };
  const res = fuzz({
    iterations: num('iterations', values.iterations!),
    seed: num('seed', values.seed!),
    start: num('start', values.start!),
    caseLimitMs: num('case-limit-ms', values['case-limit-ms']!),
    saveDir: values['save-failures'] ? resolve(values['save-failures']) : undefined,
    log: (l) => console.log(l),
  });
  console.log(`fuzz: ${res.iterations} iterations in ${(res.ms / 1000).toFixed(1)} s: ${res.ok} ok, ${res.rejected} rejected with LoaderError, ${res.failures.length} failures`);
  if (values.reasons) {
    for (const [k, v] of Object.entries(res.reasons).sort((a, b) => b[1] - a[1])) console.log(`${String(v).padStart(7)}  ${k}`);
  }
  for (const f of res.failures) console.log(`  replay: npm run fuzz -- --seed ${f.seed} --start ${f.iteration} --iterations 1   (${f.error.split('\n')[0]})`);
  return res.failures.length ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 2;
  }
}
