// StageTrace: turns activations at trace points into JSONL records. The
// backend computes stats, hash and sample; the full row is copied once to the
// sidecar so the analyzer's errors are exact.
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

export class StageTracer {
  private ctx: { prompt: string; exp: Exp; phase: string } | undefined;

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
    };
  }

  private position(ctx: { prompt: string; exp: Exp; phase: string }, info: TapInfo) {
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

  private record(
    ctx: { prompt: string; exp: Exp; phase: string },
    layer: number | null,
    point: Point,
    t: Tensor,
    row: number,
    info: TapInfo,
    head?: number,
  ): void {
    const b = this.backend;
    const width = t.shape[1]!;
    const indices = sampleIndices(width);
    const s = b.summarize(t, row, indices);
    const data = withRows(t, row, 1, (v) => b.download(v)) as Float32Array | Float64Array;
    const rec: StageRecord = {
      type: 'stage',
      ...this.position(ctx, info),
      layer,
      point,
      ...(head !== undefined ? { head } : {}),
      shape: [1, width],
      dtype: b.actDtype,
      stats: { mean: s.mean, abs_mean: s.abs_mean, rms: s.rms, min: s.min, max: s.max, nan: s.nan, inf: s.inf },
      hash: s.hash,
      sample: { indices, values: Array.from(s.sample, toJsonNumber) },
      row: this.writer.writeRow(data),
    };
    if (point === 'logits') {
      const k = Math.min(this.sel.topk, width);
      const top = withRows(t, row, 1, (v) => b.topk(v, k));
      rec.topk = { ids: Array.from(top.ids), values: Array.from(top.values, toJsonNumber) };
    }
    this.writer.write(rec);
  }

  private input(ctx: { prompt: string; exp: Exp; phase: string }, emb: Tensor, info: TapInfo): void {
    const s = this.backend.summarize(emb, 0, []);
    this.writer.write({ type: 'input', ...this.position(ctx, info), embedding_hash: s.hash });
  }
}
