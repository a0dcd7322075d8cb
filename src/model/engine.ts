// The Llama forward pass on a backend. It reads top to bottom like the model:
// embed, then per layer rmsnorm -> qkv -> rope -> attention -> wo -> residual
// -> rmsnorm -> swiglu -> residual, then final norm and classifier (each
// residual add and the norm after it are one op, as are Q/K/V, gate/up, the
// RoPE of Q and K and their cache writes: fused outputs equal the unfused bits). Each
// `at` call is a trace point; prefill and decode run this same code. A
// planted fault (src/faults.ts) acts on decode calls only: on the token
// embedded, on where K/V are written and read, or at a trace point.
import { withRows, type AttentionOptions, type Backend, type Graph, type Tensor } from '../native.js';
import { FINAL_POINTS, HEAD_POINTS, LAYER_POINTS, type Point } from '../trace/points.js';
import type { LlamaConfig } from './config.js';
import { ropeInvFreq } from './rope.js';
import type { ModelWeights } from './weights.js';

/** Per-layer K and V rows, [capacity, n_kv_heads * head_dim] each: row views of one allocation. */
export interface KVCache {
  capacity: number;
  k: Tensor[];
  v: Tensor[];
  /** The allocation k and v are views of. */
  storage: Tensor;
  /** Number of positions written so far. */
  length: number;
  /** The pooled allocation `storage` is a view of, until freeCache returns it. */
  whole?: Tensor;
}

/** Where a traced row sits in the call. */
export interface TapInfo {
  tokenIndex: number; // row within this forward call
  posId: number; // its position in the sequence
  seqLen: number; // keys it attends to (pos_id + 1)
  tokenId: number;
}

/** Receives activations at trace points. `row` selects the traced row of `t`. */
export interface Tap {
  wants(layer: number | null, point: Point): boolean;
  /** Row `row` of t at a stage point. */
  record(layer: number | null, point: Point, t: Tensor, row: number, info: TapInfo): void;
  /** Rows `heads` of t at a per-head point (scores, probs, pv), row h being head h: one record each, with its head. */
  recordHeads(layer: number | null, point: Point, t: Tensor, heads: readonly number[], info: TapInfo): void;
  input?(embeddingRow: Tensor, info: TapInfo): void;
  /** The heads to record of per-head points, out of nHeads. */
  heads(nHeads: number): number[];
  /** Before a one-row call's first op: the widths of the points it will record; the tap makes room for all of them (for slot). */
  reserve?(widths: readonly number[]): void;
  /**
   * In a reserved call: a [1, width] tensor in the tap's trace buffer for the op that makes `points`
   * (one tensor, several points: x_out of a layer is x_in of the next) to write into, so that
   * recording it copies nothing; undefined where none of them is traced.
   */
  slot?(points: readonly (readonly [number | null, Point])[], width: number): Tensor | undefined;
  /** Called when the forward call is done: a tap that defers its records writes them here. */
  end?(): void;
  /** Present where a decode step's graph may carry this tap's records (see TapGraph). */
  graph?: TapGraph;
}

/**
 * A tap whose records a step graph can carry: the ops' writes into its slots
 * and its row copies are captured with the step and run again by every
 * replay, which only tells the tap what they recorded. A tap offers this only
 * when every record it makes is one of those (no per-head probe, no input
 * summary).
 */
export interface TapGraph {
  /** Which records the tap makes, and into which buffer: a graph replays only for a tap of the same key, while it is open. */
  readonly key: { readonly open: boolean };
  /** Before the step is captured: the tap issues what it holds and makes room for the whole step, so its copies start where every replay's will. */
  beforeCapture(): void;
  /** After the capture (its records wait in the tap, with this step's info): what they were, for the replays. */
  captured(): unknown;
  /** After a capture that threw: its records are dropped (their copies never ran). */
  abortCapture(): void;
  /** Before a replay: the records its copies make, as captured, with this step's info. */
  replay(captured: unknown, info: TapInfo): void;
}

/** The activations of one forward call, [rows, width] each; what a planted fault may redo. */
export interface Activations {
  x: Tensor; // residual stream
  x2: Tensor; // residual after attention
  xb: Tensor; // normed input of a block
  q: Tensor;
  k: Tensor;
  v: Tensor;
  att: Tensor; // attention output, before WO
  wo: Tensor;
  gate: Tensor; // silu(gate) * up once the MLP has run
  up: Tensor;
  mlp: Tensor;
  fin?: Tensor; // final norm of the last row
  logits?: Tensor;
}

export interface ForwardState {
  acts: Activations;
  cache: KVCache;
  /** Positions of the call's rows. */
  pos: Int32Array;
}

/** Where a layer writes K/V and how its attention reads them: the model's way unless a fault says otherwise. */
export interface CacheAccess {
  /** Rows the call's K/V go to; null: not written. */
  write: Int32Array | null;
  /** Positions the attention of each row reads up to. */
  read: Int32Array;
  opts?: AttentionOptions;
}

/** A defect planted in decode calls (src/faults.ts). */
export interface DecodeFault {
  /** The token ids the call embeds instead of its own. */
  tokens?(ids: readonly number[]): number[];
  /** How this layer writes and reads the KV cache instead of at `pos`. */
  cacheAccess?(layer: number, pos: Int32Array): CacheAccess | undefined;
  /** Runs once `point` is computed, before it is traced; may redo the op that made it. */
  after(layer: number | null, point: Point, st: ForwardState): void;
}

export interface ForwardResult {
  /** Logits of the last row, [1, vocab]: a view of the engine's workspace, valid until the next forward call. */
  logits: Tensor;
  top1: number;
}

/** Every activation of a forward call, for up to `rows` rows; calls use row views of it. */
interface Workspace {
  rows: number;
  acts: Required<Activations>;
}

/**
 * An untraced decode step captured as a graph (Backend.captureGraph): the
 * same ops as forward() issues, replayed in one launch with a new token and
 * position. It holds while the workspace and the KV allocation and capacity
 * it recorded are the ones a step uses (the addresses it baked in).
 */
interface StepGraph {
  graph: Graph;
  ws: Workspace;
  whole: Tensor | undefined;
  capacity: number;
  /** The tap whose row copies it carries (TapGraph.key), and what they record; undefined for an untraced step. */
  tap: TapGraph['key'] | undefined;
  captured: unknown;
  /** The graph's inputs: written before each launch. */
  ids: Int32Array;
  pos: Int32Array;
}

/** How many step graphs an engine keeps (one per KV allocation and capacity in use). */
const MAX_STEP_GRAPHS = 4;

/** Whether a graph (or the step seen before one) recorded this cache's KV allocation and capacity, and this tap's copies. */
function holds(g: { whole: Tensor | undefined; capacity: number; tap: TapGraph['key'] | undefined }, cache: KVCache, tap: TapGraph | undefined): boolean {
  return g.whole === cache.whole && g.capacity === cache.capacity && g.tap === tap?.key;
}

/** Where the traced row (the call's last) sits. */
function tapInfo(ids: Int32Array, pos: Int32Array): TapInfo {
  const last = ids.length - 1;
  return { tokenIndex: last, posId: pos[last]!, seqLen: pos[last]! + 1, tokenId: ids[last]! };
}

/**
 * Runs the model on a backend. Device memory is taken once and reused: the
 * activations live in a workspace that grows to the largest call seen, KV
 * caches come from a pool of allocations kept for reuse, so a forward pass
 * allocates and frees nothing, and neither does a run after the first. close()
 * releases it all.
 */
export class Engine {
  readonly invFreq: Tensor;
  /** Acts on decode calls (one token after a cached prefix) while set. */
  fault: DecodeFault | undefined;
  /**
   * Decode steps replay a captured graph where the backend has them (traced
   * ones too, where the tap offers a TapGraph): a cache's first step runs op
   * by op, the second is captured, and later ones (at any position) replay
   * it. The bits are those of the ops.
   */
  graphs: boolean;
  private ws: Workspace | undefined;
  /** KV allocations not in use, [rows, kvDim] each. */
  private readonly freeKv: Tensor[] = [];
  private readonly stepGraphs: StepGraph[] = [];
  /** The attention probe's outputs for up to `keys` keys (per-head points): taken once, grown for a longer cache. */
  private probe: { keys: number; scores: Tensor; probs: Tensor; pv: Tensor } | undefined;
  /** The (KV allocation, capacity) of the last decode step run op by op: seen once, captured the next time. */
  private lastStep: { whole: Tensor | undefined; capacity: number; tap: TapGraph['key'] | undefined } | undefined;

  constructor(
    readonly backend: Backend,
    readonly cfg: LlamaConfig,
    readonly weights: ModelWeights,
    invFreq: Float64Array = ropeInvFreq(cfg),
  ) {
    this.graphs = backend.graphs;
    const f = invFreq;
    this.invFreq = backend.alloc(backend.actDtype, [f.length]);
    backend.upload(this.invFreq, backend.actDtype === 'f64' ? f : Float32Array.from(f));
  }

  /**
   * A zeroed cache: a row nobody wrote reads as zeros, the same on every
   * backend and run. Its K and V are row views of one allocation, taken from
   * the pool when one there is large enough (one fill of the rows it uses).
   */
  newCache(capacity: number): KVCache {
    const kvDim = this.cfg.num_key_value_heads * this.cfg.head_dim;
    const L = this.cfg.num_hidden_layers;
    const b = this.backend;
    const rows = 2 * L * capacity;
    const i = this.freeKv.findIndex((t) => t.shape[0]! >= rows);
    let whole: Tensor;
    if (i >= 0) {
      whole = this.freeKv.splice(i, 1)[0]!;
    } else {
      // A new allocation replaces the largest smaller one, so the pool never holds more than the runs need at once.
      const dropped = this.freeKv.sort((p, q) => q.shape[0]! - p.shape[0]!).shift();
      if (dropped) this.dropGraphs((g) => g.whole === dropped);
      dropped?.free();
      whole = b.alloc(b.actDtype, [rows, kvDim]);
    }
    const storage = whole.rows(0, rows);
    b.fillUniform(storage, 0n, 0, 0);
    const k = Array.from({ length: L }, (_, l) => storage.rows(l * capacity, capacity));
    const v = Array.from({ length: L }, (_, l) => storage.rows((L + l) * capacity, capacity));
    return { capacity, k, v, storage, length: 0, whole };
  }

  /** Returns the cache's allocation to the pool. */
  freeCache(cache: KVCache): void {
    for (const t of [...cache.k, ...cache.v, cache.storage]) t.free();
    cache.length = 0;
    if (cache.whole) this.freeKv.push(cache.whole);
    cache.whole = undefined;
  }

  /** Frees the workspace and the pooled caches (the weights belong to whoever loaded them). */
  close(): void {
    this.dropGraphs(() => true);
    this.freeProbe();
    if (this.ws) for (const t of Object.values(this.ws.acts)) t.free();
    this.ws = undefined;
    for (const t of this.freeKv.splice(0)) t.free();
  }

  /** The workspace, grown (once, to the new largest call) when `m` rows do not fit. */
  private workspace(m: number): Workspace {
    if (this.ws && this.ws.rows >= m) return this.ws;
    const { backend: b, cfg } = this;
    const act = b.actDtype;
    this.dropGraphs(() => true);
    if (this.ws) for (const t of Object.values(this.ws.acts)) t.free();
    const D = cfg.hidden_size;
    const qDim = cfg.num_attention_heads * cfg.head_dim;
    const kvDim = cfg.num_key_value_heads * cfg.head_dim;
    this.ws = {
      rows: m,
      acts: {
        x: b.alloc(act, [m, D]),
        x2: b.alloc(act, [m, D]),
        xb: b.alloc(act, [m, D]),
        q: b.alloc(act, [m, qDim]),
        k: b.alloc(act, [m, kvDim]),
        v: b.alloc(act, [m, kvDim]),
        att: b.alloc(act, [m, qDim]),
        wo: b.alloc(act, [m, D]),
        gate: b.alloc(act, [m, cfg.intermediate_size]),
        up: b.alloc(act, [m, cfg.intermediate_size]),
        mlp: b.alloc(act, [m, D]),
        fin: b.alloc(act, [1, D]),
        logits: b.alloc(act, [1, cfg.vocab_size]),
      },
    };
    return this.ws;
  }

  /**
   * Runs `ids` at positions startPos.. through the model, appending their K/V
   * to the cache, and returns the logits of the last row. Prefill is a call
   * with the whole prompt; decode is a call with one token after a cached
   * prefix, and only decode calls see a planted fault.
   */
  forward(callIds: readonly number[], startPos: number, cache: KVCache, tap?: Tap): ForwardResult {
    const m = callIds.length;
    const fault = m === 1 && startPos > 0 ? this.fault : undefined;
    const ids = Int32Array.from(fault?.tokens ? fault.tokens(callIds) : callIds);
    if (m < 1) throw new Error('forward: no tokens');
    if (startPos !== cache.length) {
      throw new Error(`forward: start position ${startPos} does not follow the cache's ${cache.length} positions`);
    }
    if (startPos + m > cache.capacity) {
      throw new Error(`forward: positions up to ${startPos + m - 1} exceed the KV cache capacity ${cache.capacity}`);
    }
    const pos = Int32Array.from(ids, (_, i) => startPos + i);
    const ws = this.workspace(m);
    if (m === 1 && !fault && (!tap || tap.graph) && this.graphs && cache.whole) this.decodeStep(ids, pos, cache, ws, tap);
    else this.pass(ids, pos, cache, ws, tap, fault);
    cache.length = startPos + m;
    const logits = ws.acts.logits;
    const top1 = this.backend.topk(logits, 1).ids[0]!;
    return { logits: logits.rows(0, 1), top1 };
  }

  /** The model on the call's rows: what forward() runs, op by op, or records into a step graph. */
  private pass(ids: Int32Array, pos: Int32Array, cache: KVCache, wsp: Workspace, tap?: Tap, fault?: DecodeFault): void {
    const { backend: b, cfg, weights: w } = this;
    const m = ids.length;
    const last = m - 1;
    const info = tapInfo(ids, pos);

    // This call's rows of the workspace: views, freed at the end; nothing is allocated.
    const ws = wsp.acts;
    const rowsOf = (t: Tensor) => (t.shape[0] === m ? t : t.rows(0, m));
    const acts: Activations = {
      x: rowsOf(ws.x),
      x2: rowsOf(ws.x2),
      xb: rowsOf(ws.xb),
      q: rowsOf(ws.q),
      k: rowsOf(ws.k),
      v: rowsOf(ws.v),
      att: rowsOf(ws.att),
      wo: rowsOf(ws.wo),
      gate: rowsOf(ws.gate),
      up: rowsOf(ws.up),
      mlp: rowsOf(ws.mlp),
    };
    const xb = acts.xb; // the attention norm's output; the ffn norm's, where not traced
    const state: ForwardState = { acts, cache, pos };
    const at = (layer: number | null, point: Point, t: Tensor, row = last) => {
      fault?.after(layer, point, state);
      if (tap?.wants(layer, point)) tap.record(layer, point, t, row, info);
    };
    // A one-row call without a fault writes traced points straight into the tap's trace buffer where
    // it offers a slot, so recording them copies nothing; else into the workspace.
    const direct = m === 1 && !fault && tap?.slot && tap.reserve ? tap : undefined;
    direct?.reserve!(this.traceWidths(direct, info.seqLen));
    const into = (t: Tensor, ...points: (readonly [number | null, Point])[]) => direct?.slot!(points, t.shape[1]!) ?? t;

    let x = into(acts.x, [0, 'x_in']);
    b.embedding(x, w.embed, ids);
    if (tap?.input) withRows(x, last, 1, (row) => tap.input!(row, info));

    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      const lw = w.layers[l]!;
      at(l, 'x_in', x);

      // Later layers' attention norm comes with the residual add before them.
      if (l === 0) b.rmsnorm(xb, x, lw.attnNorm, cfg.rms_norm_eps);
      const q = into(acts.q, [l, 'q']);
      const k = into(acts.k, [l, 'k']);
      const v = into(acts.v, [l, 'v']);
      b.matmul([q, k, v], xb, lw.wqkv);
      // RoPE on q and k, and this call's K and V rows into the cache, in one op.
      const kv = fault?.cacheAccess?.(l, pos) ?? { write: pos, read: pos };
      const heads = [cfg.num_attention_heads, cfg.num_key_value_heads];
      b.rope([q, k], pos, this.invFreq, heads, cfg.head_dim, kv.write ? { cache: [cache.k[l]!, cache.v[l]!], src: [k, v], positions: kv.write } : undefined);
      at(l, 'q', q);
      at(l, 'k', k);
      at(l, 'v', v);
      const att = into(acts.att, [l, 'attn_out']);
      b.attention(att, q, cache.k[l]!, cache.v[l]!, kv.read, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, kv.opts);
      if (tap && HEAD_POINTS.some((p) => tap.wants(l, p))) {
        withRows(q, last, 1, (qRow) => this.probeAttention(tap, l, qRow, cache, kv.read[last]!, kv.opts, info));
      }
      at(l, 'attn_out', att);

      const wo = into(acts.wo, [l, 'wo_out']);
      b.matmul(wo, att, lw.wo);
      at(l, 'wo_out', wo);
      const x2 = into(acts.x2, [l, 'x_after_attn']);
      const ffnIn = into(xb, [l, 'ffn_norm']);
      b.addRmsnorm(x2, ffnIn, x, wo, lw.ffnNorm, cfg.rms_norm_eps);
      at(l, 'x_after_attn', x2);
      at(l, 'ffn_norm', ffnIn);
      const gate = into(acts.gate, [l, 'gate']);
      const up = into(acts.up, [l, 'up']);
      b.matmul([gate, up], ffnIn, lw.wGateUp);
      at(l, 'gate', gate);
      at(l, 'up', up);
      // silu(gate) * up in place, unless gate was traced into a slot (its record must keep it).
      const act = into(acts.gate, [l, 'act']);
      b.siluMul(act, gate, up);
      at(l, 'act', act);
      const mlp = into(acts.mlp, [l, 'mlp_out']);
      b.matmul(mlp, act, lw.wDown);
      at(l, 'mlp_out', mlp);
      const next = w.layers[l + 1];
      const xOut = next ? into(acts.x, [l, 'x_out'], [l + 1, 'x_in']) : into(acts.x, [l, 'x_out']);
      if (next) b.addRmsnorm(xOut, xb, x2, mlp, next.attnNorm, cfg.rms_norm_eps);
      else b.add(xOut, x2, mlp);
      at(l, 'x_out', xOut);
      x = xOut;
    }

    // Only the last row goes on to the classifier.
    const fin = (acts.fin = into(ws.fin, [null, 'final_norm'], [null, 'lm_head_in']));
    withRows(x, last, 1, (xl) => b.rmsnorm(fin, xl, w.finalNorm, cfg.rms_norm_eps));
    at(null, 'final_norm', fin, 0);
    at(null, 'lm_head_in', fin, 0);
    // The logits stay in the workspace, where forward() reads the top-1 and the caller the row.
    const logits = (acts.logits = ws.logits);
    b.matmul(logits, fin, w.lmHead);
    at(null, 'logits', logits, 0);

    tap?.end?.();
    for (const t of Object.values(acts)) if (!Object.values(ws).includes(t)) t.free();
  }

  /**
   * A decode step: op by op the first time a (KV allocation, capacity, tap)
   * is seen, captured as a graph the second, replayed after that. The ops'
   * own checks ran at capture; a replay checks the token here.
   */
  private decodeStep(ids: Int32Array, pos: Int32Array, cache: KVCache, ws: Workspace, tap: Tap | undefined): void {
    const id = ids[0]!;
    if (id < 0 || id >= this.cfg.vocab_size) throw new Error(`forward: token id ${id} is outside the vocabulary [0, ${this.cfg.vocab_size})`);
    const tg = tap?.graph;
    if (this.stepGraphs.some((g) => g.tap && !g.tap.open)) this.dropGraphs((g) => g.tap !== undefined && !g.tap.open);
    let g = this.stepGraph(cache, ws, tg);
    if (g) {
      tg?.replay(g.captured, tapInfo(ids, pos));
    } else {
      if (!this.lastStep || !holds(this.lastStep, cache, tg)) {
        this.lastStep = { whole: cache.whole, capacity: cache.capacity, tap: tg?.key };
        this.pass(ids, pos, cache, ws, tap);
        return;
      }
      tg?.beforeCapture();
      const inputs = { ids: Int32Array.from(ids), pos: Int32Array.from(pos) };
      // The tap's end (its statistics and copies back) follows the launch, outside the graph.
      const capturing = tap && { ...tap, end: undefined };
      let graph: Graph;
      try {
        graph = this.backend.captureGraph([inputs.ids, inputs.pos], () => this.pass(inputs.ids, inputs.pos, cache, ws, capturing));
      } catch (e) {
        tg?.abortCapture();
        throw e;
      }
      if (this.stepGraphs.length >= MAX_STEP_GRAPHS) this.stepGraphs.shift()!.graph.free();
      g = { graph, ws, whole: cache.whole, capacity: cache.capacity, tap: tg?.key, captured: tg?.captured(), ...inputs };
      this.stepGraphs.push(g);
    }
    g.ids[0] = id;
    g.pos[0] = pos[0]!;
    g.graph.launch([g.ids, g.pos]);
    tap?.end?.();
  }

  /** The number of nodes of the step graph a decode step on this cache (traced by `tap`) replays; undefined until captured. */
  stepGraphNodes(cache: KVCache, tap?: Tap): number | undefined {
    if (tap && !tap.graph) return undefined; // such a step always runs op by op
    return this.ws && this.stepGraph(cache, this.ws, tap?.graph)?.graph.nodes;
  }

  private stepGraph(cache: KVCache, ws: Workspace, tap: TapGraph | undefined): StepGraph | undefined {
    return this.stepGraphs.find((g) => g.ws === ws && holds(g, cache, tap));
  }

  private dropGraphs(which: (g: StepGraph) => boolean): void {
    for (let i = this.stepGraphs.length - 1; i >= 0; i--) {
      if (!which(this.stepGraphs[i]!)) continue;
      this.stepGraphs[i]!.graph.free();
      this.stepGraphs.splice(i, 1);
    }
    this.lastStep = undefined;
  }

  /**
   * Traces what the fused attention keeps inside for the traced row: scores,
   * probs and pv per head, from the backend's probe, which follows the
   * attention op's own order (its pv equals attn_out's row bit for bit).
   */
  private probeAttention(tap: Tap, layer: number, qRow: Tensor, cache: KVCache, pos: number, opts: AttentionOptions | undefined, info: TapInfo): void {
    const { backend: b, cfg } = this;
    const H = cfg.num_attention_heads;
    const p = this.probeBuffers(Math.max(cache.capacity, pos + 1));
    const scores = p.scores.reshape(H, pos + 1);
    const probs = p.probs.reshape(H, pos + 1);
    const pv = p.pv;
    b.attentionProbe(scores, probs, pv, qRow, cache.k[layer]!, cache.v[layer]!, pos, H, cfg.num_key_value_heads, cfg.head_dim, opts);
    const heads = tap.heads(H);
    for (const [point, t] of [['scores', scores], ['probs', probs], ['pv', pv]] as const) {
      if (tap.wants(layer, point)) tap.recordHeads(layer, point, t, heads, info);
    }
    for (const t of [scores, probs]) t.free();
  }

  /** What a one-row call traced by `tap` records (Tap.reserve): the width of every point it wants, at `keys` keys. */
  private traceWidths(tap: Tap, keys: number): number[] {
    const { cfg } = this;
    const H = cfg.num_attention_heads;
    const D = cfg.hidden_size;
    const qDim = H * cfg.head_dim;
    const kvDim = cfg.num_key_value_heads * cfg.head_dim;
    const I = cfg.intermediate_size;
    const heads = tap.heads(H).length;
    const width: Record<Point, number> = {
      x_in: D, q: qDim, k: kvDim, v: kvDim, scores: heads * keys, probs: heads * keys, pv: heads * cfg.head_dim,
      attn_out: qDim, wo_out: D, x_after_attn: D, ffn_norm: D, gate: I, up: I, act: I, mlp_out: D, x_out: D,
      final_norm: D, lm_head_in: D, logits: cfg.vocab_size,
    };
    const widths: number[] = [];
    for (let l = 0; l < cfg.num_hidden_layers; l++) for (const p of LAYER_POINTS) if (tap.wants(l, p)) widths.push(width[p]);
    for (const p of FINAL_POINTS) if (tap.wants(null, p)) widths.push(width[p]);
    return widths;
  }

  private probeBuffers(keys: number): NonNullable<Engine['probe']> {
    if (this.probe && this.probe.keys >= keys) return this.probe;
    this.freeProbe();
    const { backend: b, cfg } = this;
    const H = cfg.num_attention_heads;
    this.probe = {
      keys,
      scores: b.alloc(b.actDtype, [H * keys, 1]),
      probs: b.alloc(b.actDtype, [H * keys, 1]),
      pv: b.alloc(b.actDtype, [H, cfg.head_dim]),
    };
    return this.probe;
  }

  private freeProbe(): void {
    if (!this.probe) return;
    for (const t of [this.probe.scores, this.probe.probs, this.probe.pv]) t.free();
    this.probe = undefined;
  }
}
