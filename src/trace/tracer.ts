// StageTrace: turns activations at trace points into JSONL records. During a
// forward call each traced row is copied, in stream order and without a
// sync, into a trace buffer on the backend; when the call ends one pass over
// the buffer on the backend gives every row's statistics and hash
// (summarizeSpans), and the rows come back in one copy for the sidecar, the
// sample and the top-k. The hash is of the very bits the sidecar keeps, so
// the analyzer's errors are exact.
import { withRows, type Backend, type Tensor } from '../native.js';
import type { Tap, TapInfo } from '../model/engine.js';
import type { Point } from './points.js';
import { toJsonNumber, type Exp, type StageRecord } from './schema.js';
import type { TraceWriter } from './writer.js';

export interface TraceSelection {
  layers: ReadonlySet<number>;
  points: ReadonlySet<Point>;
  phases: ReadonlySet<string>;
  debugInput: boolean;
  topk: number;
  /** Heads recorded of per-head points; null: all. */
  heads: readonly number[] | null;
}

/** 16 evenly spaced indices (all of them for short rows): the fixed sample slice. */
export function sampleIndices(n: number, count = 16): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor((i * n) / count));
}

interface Ctx {
  prompt: string;
  exp: Exp;
  phase: string;
}

/** A row copied into the trace buffer, waiting for the end of its forward call. */
interface Pending {
  ctx: Ctx;
  layer: number | null;
  point: Point;
  head?: number;
  info: TapInfo;
  /** Element offset in the buffer, and width. */
  at: number;
  width: number;
}

/** Elements the trace buffer starts with: every stage point of an 8B decode step, sub-stages and 32 heads included. */
const BUFFER_ELEMENTS = 1 << 22;

export class StageTracer {
  /** [capacity, 1]: rows land at element offsets as [width, 1] views. */
  private buffer: Tensor | undefined;
  private used = 0;
  private pending: Pending[] = [];
  /**
   * Host milliseconds spent so far: issuing copies (record); in flush, waiting
   * for the forward call and the statistics pass (wait), then the rows' copy
   * back, records and writes (write).
   */
  readonly hostMs = { record: 0, wait: 0, write: 0 };

  constructor(
    private readonly backend: Backend,
    private readonly writer: TraceWriter,
    private readonly runId: string,
    private readonly sel: TraceSelection,
  ) {}

  /** The tap for one forward call, or undefined when the phase is not traced. */
  phase(prompt: string, exp: Exp, phase: string): Tap | undefined {
    if (!this.sel.phases.has(phase)) return undefined;
    const ctx = { prompt, exp, phase };
    return {
      wants: (layer, point) => this.sel.points.has(point) && (layer === null || this.sel.layers.has(layer)),
      record: (layer, point, t, row, info, head) => this.record(ctx, layer, point, t, row, info, head),
      input: this.sel.debugInput ? (emb, info) => this.input(ctx, emb, info) : undefined,
      heads: (n) => (this.sel.heads ? this.sel.heads.filter((h) => h < n) : Array.from({ length: n }, (_, h) => h)),
      end: () => this.flush(),
    };
  }

  /** Frees the trace buffer; records still pending are written first. */
  close(): void {
    this.flush();
    this.buffer?.free();
    this.buffer = undefined;
  }

  private position(ctx: Ctx, info: TapInfo) {
    return {
      run_id: this.runId,
      prompt: ctx.prompt,
      exp: ctx.exp,
      phase: ctx.phase,
      token_id: info.tokenId,
      token_index: info.tokenIndex,
      pos_id: info.posId,
      seq_len: info.seqLen,
    };
  }

  private record(ctx: Ctx, layer: number | null, point: Point, t: Tensor, row: number, info: TapInfo, head?: number): void {
    const t0 = performance.now();
    const b = this.backend;
    const width = t.shape[1]!;
    const cap = this.buffer?.shape[0] ?? 0;
    if (this.used + width > cap) {
      this.flush();
      if (width > cap) {
        this.buffer?.free();
        this.buffer = b.alloc(b.actDtype, [Math.max(BUFFER_ELEMENTS, width), 1]);
      }
    }
    const at = this.used;
    b.copy(this.buffer!, t, at, row * width, width);
    this.used += width;
    this.pending.push({ ctx, layer, point, head, info, at, width });
    this.hostMs.record += performance.now() - t0;
  }

  /** The statistics pass and one copy of the buffer back, then a record per pending row in the order they were traced. */
  private flush(): void {
    if (this.pending.length === 0) return;
    const t0 = performance.now();
    const b = this.backend;
    const spans = new Int32Array(2 * this.pending.length);
    this.pending.forEach((p, i) => spans.set([p.at, p.width], 2 * i));
    const sums = b.summarizeSpans(this.buffer!, spans);
    const t1 = performance.now();
    const data = withRows(this.buffer!, 0, this.used, (v) => b.download(v)) as Float32Array | Float64Array;
    // The rows lie in the buffer in record order: one write puts them all in the sidecar.
    const rows = this.writer.writeRow(data.subarray(0, this.used));
    const records: StageRecord[] = [];
    this.pending.forEach((p, i) => {
      const s = sums[i]!;
      const indices = sampleIndices(p.width);
      const row = data.subarray(p.at, p.at + p.width);
      const rec: StageRecord = {
        type: 'stage',
        ...this.position(p.ctx, p.info),
        layer: p.layer,
        point: p.point,
        ...(p.head !== undefined ? { head: p.head } : {}),
        shape: [1, p.width],
        dtype: b.actDtype,
        stats: { mean: s.mean, abs_mean: s.abs_mean, rms: s.rms, min: s.min, max: s.max, nan: s.nan, inf: s.inf },
        hash: s.hash,
        sample: { indices, values: indices.map((k) => toJsonNumber(row[k]!)) },
        row: { file: rows.file, offset: rows.offset + p.at * data.BYTES_PER_ELEMENT, bytes: p.width * data.BYTES_PER_ELEMENT },
      };
      if (p.point === 'logits') {
        const top = topK(row, Math.min(this.sel.topk, p.width));
        rec.topk = { ids: top.map((i) => i), values: top.map((i) => toJsonNumber(row[i]!)) };
      }
      records.push(rec);
    });
    this.writer.writeLines(records);
    this.pending = [];
    this.used = 0;
    this.hostMs.wait += t1 - t0;
    this.hostMs.write += performance.now() - t1;
  }

  private input(ctx: Ctx, emb: Tensor, info: TapInfo): void {
    const s = this.backend.summarize(emb, 0, []);
    this.writer.write({ type: 'input', ...this.position(ctx, info), embedding_hash: s.hash });
  }
}

/** Indices of the k largest values, descending; ties go to the lower index (the backends' topk). NaN never wins. */
export function topK(row: Float32Array | Float64Array, k: number): number[] {
  const ids = new Int32Array(k);
  const vals = new Float64Array(k).fill(-Infinity);
  let n = 0;
  let floor = -Infinity; // the smallest kept value once k are kept
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (!(v > floor) && !(n < k && v === v)) continue; // also skips NaN
    let j = n < k ? n++ : k - 1;
    while (j > 0 && vals[j - 1]! < v) {
      vals[j] = vals[j - 1]!;
      ids[j] = ids[j - 1]!;
      j--;
    }
    vals[j] = v;
    ids[j] = i;
    if (n === k) floor = vals[k - 1]!;
  }
  return Array.from(ids.subarray(0, n));
}
