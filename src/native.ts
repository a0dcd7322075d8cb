// The only module that touches the native addon. Everything it exports is
// typed here; the addon itself validates again and throws errors with a code.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './errors.js';

export type DType = 'f32' | 'f64' | 'f16' | 'bf16' | 'i32';
export type WeightDType = 'f32' | 'f16' | 'bf16';
export type BackendKind = 'cpu' | 'cpu-fp64' | 'hip';
export const BACKEND_KINDS: readonly BackendKind[] = ['cpu', 'cpu-fp64', 'hip'];

export interface Tensor {
  readonly dtype: DType;
  readonly shape: number[];
  readonly backend: string;
  /** A view of `count` rows starting at `start`, sharing storage. */
  rows(start: number, count: number): Tensor;
  /** A [rows, cols] view of the first rows * cols elements, sharing storage. */
  reshape(rows: number, cols: number): Tensor;
  /** Releases the storage now instead of at garbage collection. */
  free(): void;
}

export interface RowSummary {
  mean: number;
  abs_mean: number;
  rms: number;
  min: number;
  max: number;
  nan: number;
  inf: number;
  /** 64-bit hash of the exact bits of the row, 16 hex digits. */
  hash: string;
  sample: Float64Array;
}

/** Attention options that planted faults change; the model runs the defaults. */
export interface AttentionOptions {
  /** Multiplies every q.k; default 1/sqrt(headDim) in the activation precision. */
  scale?: number;
  /** 0 (default): the backend's own key order; 16, 32 or 64: partials of that many keys merged in order. */
  keyChunk?: number;
}

/** Accumulations other than matmul's, for the precision faults (native/backend.h). */
export type MatmulVariant = 'f16_accumulate' | 'reverse_k';

export interface TopK {
  ids: Int32Array;
  values: Float64Array;
}

/**
 * Ops recorded once and replayed as one launch (Backend.captureGraph); the
 * index inputs are replaced at each launch, everything else is as captured.
 */
export interface Graph {
  /** Kernels and copies in the graph. */
  readonly nodes: number;
  /** Replays the ops with these index inputs, each as long as at capture. */
  launch(inputs: readonly Int32Array[]): void;
  /** Releases the graph and the device memory it kept alive. */
  free(): void;
}

export interface AllocOptions {
  /** A weight for matmul (and matmulVariant, and embedding's table when tied to the classifier). */
  matmul?: boolean;
}

/** Passed once the work issued before it has finished. */
export interface Fence {
  wait(): void;
}

/** Values per span of summarizeSpans: these, then the hash. */
export const SPAN_STAT_FIELDS = ['mean', 'abs_mean', 'rms', 'min', 'max', 'nan', 'inf'] as const;
export const SPAN_STATS = SPAN_STAT_FIELDS.length + 1;

/** Span i of summarizeSpans' output (its bytes at byteOffset of buf) as a RowSummary without sample. */
export function readSpanStats(buf: ArrayBuffer, byteOffset: number, i: number): RowSummary {
  const o = byteOffset + i * SPAN_STATS * 8;
  const v = new Float64Array(buf, o, SPAN_STATS - 1);
  const hash = new BigUint64Array(buf, o + (SPAN_STATS - 1) * 8, 1)[0]!;
  return { mean: v[0]!, abs_mean: v[1]!, rms: v[2]!, min: v[3]!, max: v[4]!, nan: v[5]!, inf: v[6]!, hash: hash.toString(16).padStart(16, '0'), sample: new Float64Array(0) };
}

/** A kvWrite's arguments: cache[positions[m]] = src[m] for each (cache, src) pair. */
export interface KvWrite {
  cache: Tensor | readonly Tensor[];
  src: Tensor | readonly Tensor[];
  positions: Int32Array;
}

/** The op contract (native/backend.h). Activations are f32, or f64 on cpu-fp64. */
export interface Backend {
  readonly name: BackendKind;
  readonly device: string;
  readonly actDtype: 'f32' | 'f64';
  /** Whether captureGraph is available (hip). */
  readonly graphs: boolean;
  /**
   * Records the ops `record` calls instead of running them. The index arrays
   * they take (ids, positions) must be among `inputs`, the very arrays;
   * attention is recorded for the whole KV cache, each row reading its key
   * count on the device, so the graph replays at any position. Copies to the
   * host are refused while recording.
   */
  captureGraph(inputs: readonly Int32Array[], record: () => void): Graph;
  /** Bytes free and in total where this backend's tensors live. */
  memInfo(): { free: number; total: number };
  /**
   * With `matmul`, a weight [out, in] (2-D f32/f16/bf16) for matmul, stored as
   * the backend's matmul reads it fastest: on hip tiled in the matrix units'
   * operand order where in % 8 == 0 (hip/mma.h). upload, download and
   * fillUniform still take its rows in row-major order, and rows() views of
   * it are weights too (matmul takes those that start at a multiple of 16
   * rows); other ops refuse it.
   */
  alloc(dtype: DType, shape: number[], opts?: AllocOptions): Tensor;
  /** Without byteOffset the data must fill t exactly; with one, it lands at that byte offset and must fit. */
  upload(t: Tensor, data: Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array, byteOffset?: number): void;
  /** Host memory that upload reads fastest (page-locked on hip); loaders stage weights in it. */
  hostBuffer(bytes: number): ArrayBuffer;
  download(t: Tensor): Float32Array | Float64Array | Int32Array | Uint16Array;
  /**
   * dst = src (same dtype and size), or with element offsets and a count (flat,
   * e.g. one row into a trace buffer): where they live, device to device on
   * hip, in stream order.
   */
  copy(dst: Tensor, src: Tensor, dstAt?: number, srcAt?: number, count?: number): void;
  fillUniform(t: Tensor, seed: bigint, scale: number, offset: number): void;
  embedding(out: Tensor, table: Tensor, ids: Int32Array): void;
  rmsnorm(out: Tensor, x: Tensor, w: Tensor, eps: number): void;
  /**
   * out = x w^T. With several outputs (at most 3) they take the product's
   * columns in order: Q, K and V from one stacked weight in one call, each
   * column computed exactly as alone.
   */
  matmul(out: Tensor | readonly Tensor[], x: Tensor, w: Tensor): void;
  matmulVariant(out: Tensor, x: Tensor, w: Tensor, variant: MatmulVariant): void;
  /**
   * In place; several tensors of the same rows (Q and K, with their head counts) in one call, each as alone.
   * `then`: a kvWrite in the same call, after the rotation (a source may be a rotated tensor: K), with the
   * results of rope followed by kvWrite.
   */
  rope(x: Tensor | readonly Tensor[], positions: Int32Array, invFreq: Tensor, nHeads: number | readonly number[], headDim: number, then?: KvWrite): void;
  /** cache[positions[m]] = src[m], for each (cache, src) pair: K and V in one call. */
  kvWrite(cache: Tensor | readonly Tensor[], src: Tensor | readonly Tensor[], positions: Int32Array): void;
  attention(
    out: Tensor,
    q: Tensor,
    kCache: Tensor,
    vCache: Tensor,
    positions: Int32Array,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    opts?: AttentionOptions,
  ): void;
  /**
   * One query row at `position` with exactly attention's order, exposing
   * scores and probs [nHeads, position + 1] and pv [nHeads, headDim], which
   * equals attention's row bit for bit.
   */
  attentionProbe(
    scores: Tensor,
    probs: Tensor,
    pv: Tensor,
    q: Tensor,
    kCache: Tensor,
    vCache: Tensor,
    position: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    opts?: AttentionOptions,
  ): void;
  siluMul(out: Tensor, gate: Tensor, up: Tensor): void;
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /** sum = a + b, then out = rmsnorm(sum): the residual add and the norm after it in one pass, the bits of add then rmsnorm. */
  addRmsnorm(sum: Tensor, out: Tensor, a: Tensor, b: Tensor, w: Tensor, eps: number): void;
  topk(x: Tensor, k: number): TopK;
  summarize(x: Tensor, row: number, sample: number[]): RowSummary;
  /**
   * Stats and hash of spans of x counted flat, given as (offset, width)
   * pairs, into out, f64 [spans, SPAN_STATS] (SPAN_STAT_FIELDS, then the
   * hash's 64 bits; readSpanStats decodes them): a trace buffer's rows in one
   * pass, in stream order, without waiting.
   */
  summarizeSpans(out: Tensor, x: Tensor, spans: Int32Array): void;
  /** t's bytes into dst at byteOffset, in stream order: there once a fence made after this call has passed (hostBuffer memory: without stopping the host). */
  copyToHost(t: Tensor, dst: ArrayBuffer, byteOffset?: number): void;
  /** A fence after everything issued so far. */
  fence(): Fence;
}

/**
 * Runs fn on a view of rows of t and frees the view after: a view holds its
 * parent's storage until freed, and a finalizer only runs when the event loop
 * turns, so views made in a loop of runs would keep whole activations alive.
 */
export function withRows<T>(t: Tensor, start: number, count: number, fn: (view: Tensor) => T): T {
  const view = t.rows(start, count);
  try {
    return fn(view);
  } finally {
    view.free();
  }
}

/** Writes to files on a thread of its own, in queued order (native/file_queue.h). */
export interface FileQueue {
  /** Queues data for fd (opened to append); data must stay unchanged until a wait covers the returned ticket. */
  write(fd: number, data: ArrayBufferView, label: string): number;
  /**
   * Queues the JSONL lines of stage records, formatted on the queue's thread (native/stage_lines.h): record r
   * is heads[r] (its text up to the statistics), the statistics and hash of span r at statsAt in host (as
   * summarizeSpans lays them out), the sample of its row (spans[2r] and spans[2r + 1]: first element and width
   * in host, of elemBytes each), its row reference (rowFile, a JSON string, at rowOffset + spans[2r] * elemBytes),
   * then tails[r] and the closing brace: what JSON.stringify makes of the record. host is read before it returns.
   */
  writeStageLines(
    fd: number,
    label: string,
    heads: string[],
    tails: string[],
    host: ArrayBuffer,
    statsAt: number,
    spans: Int32Array,
    elemBytes: 4 | 8,
    rowFile: string,
    rowOffset: number,
  ): number;
  /** Returns once every write up to ticket (default: all) is done; throws the first failure (code EIO). */
  wait(ticket?: number): void;
  /** Waits for every write and stops the thread. */
  close(): void;
}

interface Addon {
  Backend: new (kind: string) => Backend;
  FileQueue: new () => FileQueue;
  backendKinds: string[];
  gpuDeviceCount(): number;
  trimHostHeap(): void;
  storageBlocks(): number;
}

/** Repository root: the nearest parent holding package.json (works from src/ and dist/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('gretacore: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

let addon: Addon | undefined;

/**
 * The addon: GRETA_ADDON=<path to greta.node> when set (a second build kept
 * beside the default one, e.g. `npm run build:hip -- -O build-hip`), else
 * node-gyp-build's choice (build/Release). A file that does not load, such as
 * a ROCm build on a machine without libamdhip64, is one error with code EADDON.
 */
function load(): Addon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    const explicit = process.env.GRETA_ADDON;
    if (explicit !== undefined && !existsSync(explicit)) {
      throw new UsageError(`GRETA_ADDON: '${explicit}' does not exist (allowed: the path of a greta.node, e.g. build/Release/greta.node)`);
    }
    const where = explicit !== undefined ? resolve(explicit) : packageRoot();
    try {
      addon = (explicit !== undefined ? require(where) : (require('node-gyp-build') as (dir: string) => unknown)(where)) as Addon;
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0];
      throw Object.assign(new Error(`cannot load the addon from ${where}: ${msg}`), { code: 'EADDON' });
    }
  }
  return addon;
}

/** Backends compiled into the loaded addon (hip only in a `npm run build:hip` build). */
export function availableBackends(): string[] {
  return [...load().backendKinds];
}

/** GPUs the HIP runtime sees; 0 without a HIP build, a driver or a device. */
export function gpuDeviceCount(): number {
  return load().gpuDeviceCount();
}

/** A queue writing files on a thread of its own. */
export function fileQueue(): FileQueue {
  return new (load().FileQueue)();
}


/**
 * Hands the C heap's free pages back to the OS (glibc keeps freed pages in
 * its arenas). Called when a session closes, so the RSS of a process that
 * runs many traces says what it holds.
 */
export function trimHostHeap(): void {
  load().trimHostHeap();
}

/** Host and device memory blocks alive in this process: tensors, scratch, graph inputs of every backend. */
export function storageBlocks(): number {
  return load().storageBlocks();
}

/** auto: hip when the addon has it and a device answers, else cpu. */
export function resolveBackendKind(kind: BackendKind | 'auto'): BackendKind {
  if (kind !== 'auto') return kind;
  return availableBackends().includes('hip') && gpuDeviceCount() > 0 ? 'hip' : 'cpu';
}

export function createBackend(kind: BackendKind): Backend {
  const A = load();
  return new A.Backend(kind);
}
