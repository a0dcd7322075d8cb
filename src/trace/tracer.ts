// StageTrace: turns activations at trace points into JSONL records. During a
// forward call each traced row is copied, in stream order and without a
// sync, into a trace buffer on the backend. When the call has issued its last
// op, one pass over the buffer on the backend gives every row's statistics
// and hash (summarizeSpans), and the rows and statistics go back to
// page-locked host memory, all in stream order. The records are written one
// forward call later, while the device runs the next call (or when the
// tracer closes, or before any other record reaches the file, so lines keep
// their order), and the writer's thread puts them in the files: the host's
// JSON and writes overlap the device's work. The
// hash is of the very bits the sidecar keeps, so the analyzer's errors are exact.
import { SPAN_STATS, withRows, type Backend, type Fence, type Tensor } from '../native.js';
import type { Tap, TapGraph, TapInfo } from '../model/engine.js';
import { HEAD_POINTS, type Point } from './points.js';
import { toJsonNumber, type Exp } from './schema.js';
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

/**
 * Where a slot starts in the buffer: a multiple of this many elements (64 bytes of f32), as the kernels'
 * 16-byte loads of an op's input require of the slot it reads; a reserve counts one such gap a point.
 */
const SLOT_ALIGN = 16;

/** The records a step graph's copies make, as its capture made them (TapGraph.captured). */
interface CapturedRows {
  rows: Omit<Pending, 'ctx' | 'info'>[];
  used: number;
}

/** A forward call's rows on their way back: written once its fence has passed. */
interface Batch {
  pending: Pending[];
  /** Page-locked host memory: the rows (elements [0, used)), then the statistics at statsAt. */
  host: ArrayBuffer;
  /** Which of the two host buffers. */
  turn: number;
  used: number;
  statsAt: number;
  /** (first element, width) of each pending row in the rows: the statistics pass's spans, and the lines'. */
  spans: Int32Array;
  fence: Fence;
}

export class StageTracer {
  /** [capacity, 1]: rows land at element offsets as [width, 1] views. */
  private buffer: Tensor | undefined;
  private used = 0;
  private pending: Pending[] = [];
  /** f64 [rows, SPAN_STATS]: the statistics pass's output. */
  private stats: Tensor | undefined;
  /** Two page-locked host buffers, taken in turn: one is written back into while the other's records are written. */
  private readonly hostBufs: (ArrayBuffer | undefined)[] = [undefined, undefined];
  /** The writer's ticket for the rows last queued from each host buffer: it is reused once they are written. */
  private readonly hostTickets = [0, 0];
  private turn = 0;
  private inFlight: Batch | undefined;
  /** Elements the current forward call has recorded, and the most any call has or reserved: the room a step graph's capture makes. */
  private callUsed = 0;
  private maxCall = 0;
  /** Elements the current call reserved (Tap.reserve): its slots fit within them; 0 outside a reserved call. */
  private callRoom = 0;
  /** The key of step graphs whose copies land in the current buffer (TapGraph.key): closed when the buffer goes. */
  private graphKey = { open: true };
  /** Between beforeCapture and captured: the copies are being captured, and nothing may be issued. */
  private capturing = false;
  /** Views of the buffer handed out as slots this call (Tap.slot), at their element offsets: freed when the call ends. */
  private readonly slots = new Map<Tensor, number>();
  /**
   * Host milliseconds spent so far: issuing row copies (record); issuing the
   * statistics pass and the copy back (issue); waiting for a batch's fence
   * (wait); building records and writing them (write).
   */
  readonly hostMs = { record: 0, issue: 0, wait: 0, write: 0 };

  constructor(
    private readonly backend: Backend,
    private readonly writer: TraceWriter,
    private readonly runId: string,
    private readonly sel: TraceSelection,
  ) {
    writer.beforeWrite = this.drainFirst;
  }

  /** Any other record (input, kv_check, the run's end) goes to the file after the stage records traced before it. */
  private readonly drainFirst = () => this.drain();

  /** The tap for one forward call, or undefined when the phase is not traced. */
  phase(prompt: string, exp: Exp, phase: string): Tap | undefined {
    if (!this.sel.phases.has(phase)) return undefined;
    const ctx = { prompt, exp, phase };
    // Row copies alone can ride in a step graph; the per-head probe and the input summary cannot.
    const copiesOnly = !this.sel.debugInput && !HEAD_POINTS.some((p) => this.sel.points.has(p));
    // Slots need the whole call's room at its start; the input summary writes a record mid-call, which issues.
    const slots = !this.sel.debugInput;
    return {
      wants: (layer, point) => this.wants(layer, point),
      record: (layer, point, t, row, info) => this.record(ctx, layer, point, t, [row], info),
      recordHeads: (layer, point, t, heads, info) => this.record(ctx, layer, point, t, heads, info, heads),
      input: this.sel.debugInput ? (emb, info) => this.input(ctx, emb, info) : undefined,
      heads: (n) => (this.sel.heads ? this.sel.heads.filter((h) => h < n) : Array.from({ length: n }, (_, h) => h)),
      end: () => {
        this.maxCall = Math.max(this.maxCall, this.callUsed);
        this.callUsed = this.callRoom = 0;
        this.issue();
        this.dropSlots();
      },
      graph: copiesOnly ? this.tapGraph(ctx) : undefined,
      reserve: slots ? (widths) => this.reserve(widths.reduce((n, w) => n + w + SLOT_ALIGN, 0)) : undefined,
      slot: slots ? (points, width) => this.slot(points, width) : undefined,
    };
  }

  private wants(layer: number | null, point: Point): boolean {
    return this.sel.points.has(point) && (layer === null || this.sel.layers.has(layer));
  }

  /**
   * Room for a one-row call's records, made before its first op (where the buffer lacks it, what is pending
   * goes back first and the buffer grows), so that nothing is issued mid-call while a slot waits for its op.
   * A step graph's capture made the room already (beforeCapture), so none is taken while one is captured.
   */
  private reserve(elements: number): void {
    this.maxCall = Math.max(this.maxCall, elements);
    if (this.used + elements > (this.buffer?.shape[0] ?? 0)) {
      this.issue();
      if (elements > (this.buffer?.shape[0] ?? 0)) this.newBuffer(Math.max(BUFFER_ELEMENTS, elements));
    }
    this.callRoom = elements;
  }

  /** Room in the reserved call for an op to write traced points into; undefined where none of them is traced. */
  private slot(points: readonly (readonly [number | null, Point])[], width: number): Tensor | undefined {
    const gap = (SLOT_ALIGN - (this.used % SLOT_ALIGN)) % SLOT_ALIGN;
    if (this.callUsed + gap + width > this.callRoom || !points.some(([l, p]) => this.wants(l, p))) return undefined;
    this.used += gap;
    this.callUsed += gap;
    const rows = this.buffer!.rows(this.used, width);
    const view = rows.reshape(1, width);
    rows.free();
    this.slots.set(view, this.used);
    this.used += width;
    this.callUsed += width;
    return view;
  }

  private dropSlots(): void {
    for (const v of this.slots.keys()) v.free();
    this.slots.clear();
  }

  private tapGraph(ctx: Ctx): TapGraph {
    const tracer = this;
    return {
      get key() {
        return tracer.graphKey;
      },
      beforeCapture: () => {
        this.issue();
        const room = Math.max(BUFFER_ELEMENTS, this.maxCall);
        if ((this.buffer?.shape[0] ?? 0) < room) this.newBuffer(room);
        this.capturing = true;
      },
      captured: (): CapturedRows => {
        this.capturing = false;
        return { rows: this.pending.map(({ ctx: _c, info: _i, ...row }) => row), used: this.used };
      },
      abortCapture: () => {
        this.capturing = false;
        this.pending = [];
        this.used = this.callUsed = this.callRoom = 0;
        this.dropSlots();
      },
      replay: (captured, info) => {
        const c = captured as CapturedRows;
        this.capturing = false;
        this.issue();
        for (const row of c.rows) this.pending.push({ ctx, info, ...row });
        this.used = this.callUsed = c.used;
      },
    };
  }

  /** A trace buffer of `elements`, in place of the current one; step graphs that copy into the old one are done. */
  private newBuffer(elements: number): void {
    if (this.buffer) {
      this.buffer.free();
      this.graphKey.open = false;
      this.graphKey = { open: true };
    }
    this.buffer = this.backend.alloc(this.backend.actDtype, [elements, 1]);
  }

  /** Writes every record still on its way, then frees the trace buffers. */
  close(): void {
    this.drain();
    if (this.writer.beforeWrite === this.drainFirst) this.writer.beforeWrite = undefined;
    this.dropSlots();
    this.buffer?.free();
    this.stats?.free();
    this.buffer = this.stats = undefined;
    this.graphKey.open = false;
    this.hostBufs.fill(undefined);
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

  /**
   * Rows `rows` of t into the trace buffer, each its own record (`heads[k]` the head of rows[k], for
   * per-head points): a run of consecutive rows travels in one copy (all heads of scores, probs and pv).
   */
  private record(ctx: Ctx, layer: number | null, point: Point, t: Tensor, rows: readonly number[], info: TapInfo, heads?: readonly number[]): void {
    const t0 = performance.now();
    const b = this.backend;
    const width = t.shape[1]!;
    const slot = this.slots.get(t);
    if (slot !== undefined) {
      // The op wrote it into the buffer already.
      this.pending.push({ ctx, layer, point, info, at: slot, width });
      this.hostMs.record += performance.now() - t0;
      return;
    }
    for (let i = 0; i < rows.length; ) {
      if (this.used + width > (this.buffer?.shape[0] ?? 0)) {
        // Never reached while slots wait (a reserved call fits the buffer): issuing would reuse their room.
        if (this.slots.size) throw new Error('trace: a call recorded more than it reserved');
        this.issue();
        if (width > (this.buffer?.shape[0] ?? 0)) this.newBuffer(Math.max(BUFFER_ELEMENTS, width));
      }
      const room = Math.floor((this.buffer!.shape[0]! - this.used) / width);
      let n = 1;
      while (n < room && i + n < rows.length && rows[i + n] === rows[i]! + n) n++;
      const at = this.used;
      b.copy(this.buffer!, t, at, rows[i]! * width, n * width);
      for (let k = 0; k < n; k++) {
        const head = heads?.[i + k];
        this.pending.push({ ctx, layer, point, ...(head !== undefined ? { head } : {}), info, at: at + k * width, width });
      }
      this.used += n * width;
      this.callUsed += n * width;
      i += n;
    }
    this.hostMs.record += performance.now() - t0;
  }

  /**
   * Sends the pending rows back: the statistics pass and the copies to host
   * memory, in stream order behind the forward call. Then writes the previous
   * batch, whose fence has passed or soon will, while the device works.
   */
  private issue(): void {
    if (this.pending.length === 0) return;
    // A step's rows outgrew the room its capture made: a bug, never a silent capture of the copy back.
    if (this.capturing) throw new Error('trace: the trace buffer filled up during a step graph capture');
    const t0 = performance.now();
    const b = this.backend;
    const n = this.pending.length;
    const spans = new Int32Array(2 * n);
    this.pending.forEach((p, i) => spans.set([p.at, p.width], 2 * i));
    if (!this.stats || this.stats.shape[0]! < n) {
      this.stats?.free();
      this.stats = b.alloc('f64', [Math.max(n, 256), SPAN_STATS]);
    }
    withRows(this.stats, 0, n, (out) => b.summarizeSpans(out, this.buffer!, spans));
    const statsAt = Math.ceil((this.used * (b.actDtype === 'f64' ? 8 : 4)) / 8) * 8;
    const host = this.hostBuffer(statsAt + n * SPAN_STATS * 8);
    withRows(this.buffer!, 0, this.used, (v) => b.copyToHost(v, host, 0));
    withRows(this.stats, 0, n, (v) => b.copyToHost(v, host, statsAt));
    const batch: Batch = { pending: this.pending, host, turn: this.turn, used: this.used, statsAt, spans, fence: b.fence() };
    this.pending = [];
    this.used = 0;
    this.hostMs.issue += performance.now() - t0;
    const previous = this.inFlight;
    this.inFlight = batch;
    if (previous) this.write(previous);
  }

  /** This turn's host buffer, grown to at least `bytes`, once the writes from it are done. */
  private hostBuffer(bytes: number): ArrayBuffer {
    this.turn ^= 1;
    this.writer.waitFor(this.hostTickets[this.turn]!);
    const cur = this.hostBufs[this.turn];
    if (cur && cur.byteLength >= bytes) return cur;
    const grown = this.backend.hostBuffer(Math.max(bytes, 2 * (cur?.byteLength ?? 0), 1 << 20));
    this.hostBufs[this.turn] = grown;
    return grown;
  }

  /** Everything traced so far, written. */
  private drain(): void {
    this.issue();
    const last = this.inFlight;
    this.inFlight = undefined;
    if (last) this.write(last);
  }

  /**
   * A batch's records, once its fence has passed: rows to the sidecar in one write, lines in one write. The
   * lines' numbers (statistics, hash, sample) are formatted on the writer's thread from the batch's host
   * memory; the text around them is made here.
   */
  private write(batch: Batch): void {
    const t0 = performance.now();
    batch.fence.wait();
    const t1 = performance.now();
    const b = this.backend;
    const data = b.actDtype === 'f64' ? new Float64Array(batch.host, 0, batch.used) : new Float32Array(batch.host, 0, batch.used);
    const rows = this.writer.writeRow(data);
    this.hostTickets[batch.turn] = rows.ticket;
    const n = batch.pending.length;
    const heads: string[] = new Array(n);
    const tails: string[] = new Array(n);
    let ctx: Ctx | undefined;
    let info: TapInfo | undefined;
    let position = '';
    const dtype = JSON.stringify(b.actDtype);
    batch.pending.forEach((p, i) => {
      if (p.ctx !== ctx || p.info !== info) {
        ({ ctx, info } = p);
        position = JSON.stringify(this.position(p.ctx, p.info)).slice(1, -1);
      }
      const head = p.head !== undefined ? `"head":${p.head},` : '';
      heads[i] = `{"type":"stage",${position},"layer":${JSON.stringify(p.layer)},"point":${JSON.stringify(p.point)},${head}"shape":[1,${p.width}],"dtype":${dtype},`;
      tails[i] = '';
      if (p.point === 'logits') {
        const row = data.subarray(p.at, p.at + p.width);
        const top = topK(row, Math.min(this.sel.topk, p.width));
        tails[i] = `,"topk":${JSON.stringify({ ids: top, values: top.map((k) => toJsonNumber(row[k]!)) })}`;
      }
    });
    this.writer.writeStageLines(heads, tails, batch.host, batch.statsAt, batch.spans, data.BYTES_PER_ELEMENT as 4 | 8, rows);
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
