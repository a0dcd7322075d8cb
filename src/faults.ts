// The fault zoo: known decode-path defects, planted on purpose so the tool can
// prove that it finds what it claims. Each is one bug class of the StageTrace
// reports (B3.27 token, B3.29 KV cache, B3.38-B3.40 WO, B3.41 ffn norm) or of
// real engines (attention scale and key split, RoPE, lm_head, precision).
//
// A fault acts on decode calls only (one token after a cached prefix; see
// Engine.forward), on every backend, through the backend's own ops. Most act
// at the first point they corrupt, after the engine has computed it and
// before it is traced, by redoing the op that made it the wrong way (the way
// a forward hook patches a module's output); attention faults change how the
// layer's attention reads the cache (Engine's AttentionCall), so the
// attention probe sees them too. The engine's own code path is the same with
// or without a fault. Without `@LAYER` a layered fault is planted in every
// layer.
import { UsageError } from './errors.js';
import type { CacheAccess, DecodeFault, Engine, ForwardState } from './model/engine.js';
import { ropeInvFreq } from './model/rope.js';
import type { Backend, Tensor } from './native.js';
import type { Point } from './trace/points.js';

export interface FaultSpec {
  name: FaultName;
  /** The one layer it is planted in; undefined: every layer (layered faults). */
  layer?: number;
}

interface Ctx {
  b: Backend;
  engine: Engine;
  /** Tensors the fault made; freed by release(). */
  owned: Tensor[];
}

interface FaultDef {
  description: string;
  /**
   * The points it makes differ, in forward order from the first: the first
   * mismatch must be the first of these that is traced.
   */
  corrupts: readonly Point[];
  /** false: acts outside the layers (the token embedded, the classifier); no @LAYER. */
  layered: boolean;
  /** The decode row must attend to more keys than this for the fault to change anything. */
  minKeys?: number;
  /** Why this model cannot carry the fault, if it cannot. */
  unsupported?(engine: Engine): string | undefined;
  /** Prepares what it needs once (e.g. a transposed weight) and returns its action at corrupts[0]. */
  plant?(ctx: Ctx, layers: readonly number[]): (layer: number | null, st: ForwardState) => void;
  tokens?(ids: readonly number[], vocab: number): number[];
  cacheAccess?(pos: Int32Array): CacheAccess;
  /**
   * What the KV check must find after decode0 in E1: the planted layer's own
   * cache wrong at `row` positions before the decode position (0: its own
   * row), or the first wrong rows one layer deeper ('next': the fault is
   * downstream of this layer's K/V write), or nothing ('none').
   */
  kv: { row: number } | 'next' | 'none';
}

/** Redoes q and k (projection and RoPE) with other positions or frequencies; the cache write follows. */
function redoRope(ctx: Ctx, layer: number, st: ForwardState, ropePos: Int32Array, invFreq: Tensor): void {
  const { b, engine } = ctx;
  const { cfg } = engine;
  const lw = engine.weights.layers[layer]!;
  const a = st.acts;
  // The fused projection, as the engine runs it (v comes out as it was: same op, same bits).
  b.matmul([a.q, a.k, a.v], a.xb, lw.wqkv);
  // The engine wrote K to the cache with its rotation: this one replaces it.
  const then = { cache: st.cache.k[layer]!, src: a.k, positions: st.pos };
  b.rope([a.q, a.k], ropePos, invFreq, [cfg.num_attention_heads, cfg.num_key_value_heads], cfg.head_dim, then);
}

/** The engine makes x_after_attn and ffn_norm in one op: a fault that changes the first redoes the second. */
function renormFfn(ctx: Ctx, layer: number, st: ForwardState): void {
  const { engine } = ctx;
  ctx.b.rmsnorm(st.acts.xb, st.acts.x2, engine.weights.layers[layer]!.ffnNorm, engine.cfg.rms_norm_eps);
}

/** The engine makes x_out and the next layer's attention norm in one op: a fault that changes x_out redoes the norm. */
function renormAttn(ctx: Ctx, layer: number, st: ForwardState): void {
  const { engine } = ctx;
  const lw = engine.weights.layers[layer];
  if (lw) ctx.b.rmsnorm(st.acts.xb, st.acts.x, lw.attnNorm, engine.cfg.rms_norm_eps);
}

const ATTENTION_ON: readonly Point[] = ['scores', 'probs', 'pv', 'attn_out'];
const ROPE_ON: readonly Point[] = ['q', 'k', ...ATTENTION_ON];

function uploadFreq(ctx: Ctx, f: Float64Array): Tensor {
  const b = ctx.b;
  const t = b.alloc(b.actDtype, [f.length]);
  b.upload(t, b.actDtype === 'f64' ? f : Float32Array.from(f));
  ctx.owned.push(t);
  return t;
}

const shifted = (pos: Int32Array, by: number) => pos.map((p) => p + by);

/** The next representable value away from zero: the last mantissa bit flipped up. */
function bumpUlp(data: Float32Array | Float64Array, i: number): void {
  if (data instanceof Float32Array) new Uint32Array(data.buffer, data.byteOffset, data.length)[i]! += 1;
  else new BigUint64Array(data.buffer, data.byteOffset, data.length)[i]! += 1n;
}

const FAULTS = {
  token: {
    description: 'decode embeds the next token id instead of its own (B3.27: wrong decode input)',
    kv: { row: 0 },
    corrupts: ['x_in'],
    layered: false,
    tokens: (ids, vocab) => ids.map((id) => (id + 1) % vocab),
  },
  position: {
    description: 'decode RoPE rotates q and k at position pos+1 (wrong pos_id)',
    kv: { row: 0 },
    corrupts: ROPE_ON,
    layered: true,
    plant: (ctx) => (l, st) => redoRope(ctx, l!, st, shifted(st.pos, 1), ctx.engine.invFreq),
  },
  kv_stale: {
    description: "decode never writes its K/V row; attention reads what the row held before (B3.29: stale KV)",
    kv: { row: 0 },
    corrupts: ATTENTION_ON,
    layered: true,
    cacheAccess: (pos) => ({ write: null, read: pos }),
  },
  kv_position: {
    description: "decode writes its K and V rows one position early, over the previous token's (B3.24-B3.26: wrong KV row)",
    kv: { row: 1 },
    corrupts: ATTENTION_ON,
    layered: true,
    cacheAccess: (pos) => ({ write: shifted(pos, -1), read: pos }),
  },
  kv_length: {
    description: 'decode attention reads up to the cache length before its own row: one key fewer',
    kv: 'next',
    corrupts: ATTENTION_ON,
    layered: true,
    cacheAccess: (pos) => ({ write: pos, read: shifted(pos, -1) }),
  },
  attn_scale: {
    description: 'decode attention without the 1/sqrt(head_dim) score scale',
    kv: 'next',
    corrupts: ATTENTION_ON,
    layered: true,
    cacheAccess: (pos) => ({ write: pos, read: pos, opts: { scale: 1 } }),
  },
  attn_split: {
    description: 'decode attention splits keys into chunks of 16 merged in order, unlike prefill (a tiny, real difference)',
    kv: 'next',
    corrupts: ['probs', 'pv', 'attn_out'],
    layered: true,
    minKeys: 16,
    cacheAccess: (pos) => ({ write: pos, read: pos, opts: { keyChunk: 16 } }),
  },
  rope_theta: {
    description: "decode RoPE with theta 10000 (500000 when the model's is 10000)",
    kv: { row: 0 },
    corrupts: ROPE_ON,
    layered: true,
    plant: (ctx) => {
      const cfg = ctx.engine.cfg;
      const f = uploadFreq(ctx, ropeInvFreq({ ...cfg, rope_theta: cfg.rope_theta === 10000 ? 500000 : 10000 }));
      return (l, st) => redoRope(ctx, l!, st, st.pos, f);
    },
  },
  rope_scaling: {
    description: 'decode RoPE without the Llama 3 frequency scaling',
    kv: { row: 0 },
    corrupts: ROPE_ON,
    layered: true,
    unsupported: (e) => (e.cfg.rope_scaling === null ? 'the model has no RoPE scaling to leave out' : undefined),
    plant: (ctx) => {
      const f = uploadFreq(ctx, ropeInvFreq({ ...ctx.engine.cfg, rope_scaling: null }));
      return (l, st) => redoRope(ctx, l!, st, st.pos, f);
    },
  },
  wo_layout: {
    description: 'decode WO projection reads its weight transposed (B3.38-B3.40: WO layout)',
    kv: 'next',
    corrupts: ['wo_out'],
    layered: true,
    unsupported: (e) =>
      e.cfg.num_attention_heads * e.cfg.head_dim === e.cfg.hidden_size
        ? undefined
        : `WO is not square (${e.cfg.hidden_size} x ${e.cfg.num_attention_heads * e.cfg.head_dim}), so it has no transposed reading`,
    plant: (ctx, layers) => {
      const { b, engine } = ctx;
      const transposed = new Map<number, Tensor>();
      for (const l of layers) {
        const w = engine.weights.layers[l]!.wo;
        const [rows, cols] = w.shape as [number, number];
        const src = b.download(w);
        const dst = new (src.constructor as new (n: number) => typeof src)(src.length);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c]!;
        const t = b.alloc(w.dtype, [cols, rows], { matmul: true });
        b.upload(t, dst);
        ctx.owned.push(t);
        transposed.set(l, t);
      }
      return (l, st) => b.matmul(st.acts.wo, st.acts.att, transposed.get(l!)!);
    },
  },
  matmul_order: {
    description: 'decode WO projection sums over K in reverse order (fp32: a tiny, real difference)',
    kv: 'next',
    corrupts: ['wo_out'],
    layered: true,
    plant: (ctx) => (l, st) => ctx.b.matmulVariant(st.acts.wo, st.acts.att, ctx.engine.weights.layers[l!]!.wo, 'reverse_k'),
  },
  residual_skip: {
    description: 'decode drops the residual: x_after_attn = wo_out',
    kv: 'next',
    corrupts: ['x_after_attn'],
    layered: true,
    plant: (ctx) => (l, st) => {
      ctx.b.copy(st.acts.x2, st.acts.wo);
      renormFfn(ctx, l!, st);
    },
  },
  residual_double: {
    description: 'decode adds the attention output twice: x_after_attn = x_in + 2 wo_out',
    kv: 'next',
    corrupts: ['x_after_attn'],
    layered: true,
    plant: (ctx) => (l, st) => {
      ctx.b.add(st.acts.x2, st.acts.x2, st.acts.wo);
      renormFfn(ctx, l!, st);
    },
  },
  ffn_norm_eps: {
    description: 'decode ffn RMSNorm with 10x the epsilon',
    kv: 'next',
    corrupts: ['ffn_norm'],
    layered: true,
    plant: (ctx) => (l, st) =>
      ctx.b.rmsnorm(st.acts.xb, st.acts.x2, ctx.engine.weights.layers[l!]!.ffnNorm, ctx.engine.cfg.rms_norm_eps * 10),
  },
  ffn_norm_weight: {
    description: "decode ffn RMSNorm with the attention norm's weights (B3.41: ffn_norm)",
    kv: 'next',
    corrupts: ['ffn_norm'],
    layered: true,
    plant: (ctx) => (l, st) =>
      ctx.b.rmsnorm(st.acts.xb, st.acts.x2, ctx.engine.weights.layers[l!]!.attnNorm, ctx.engine.cfg.rms_norm_eps),
  },
  matmul_fp16: {
    description: 'decode down projection accumulates in fp16',
    kv: 'next',
    corrupts: ['mlp_out'],
    layered: true,
    plant: (ctx) => (l, st) =>
      ctx.b.matmulVariant(st.acts.mlp, st.acts.gate, ctx.engine.weights.layers[l!]!.wDown, 'f16_accumulate'),
  },
  ulp: {
    description: "one element of decode's x_out moves by one ulp (the smallest change there is)",
    kv: 'next',
    corrupts: ['x_out'],
    layered: true,
    plant: (ctx) => (l, st) => {
      const data = ctx.b.download(st.acts.x) as Float32Array | Float64Array;
      bumpUlp(data, data.length >> 1);
      ctx.b.upload(st.acts.x, data);
      renormAttn(ctx, l! + 1, st);
    },
  },
  lm_head_shift: {
    description: 'decode lm_head reads the next row: logit i is row i+1 of lm_head (every earlier point equal)',
    kv: 'none',
    corrupts: ['logits'],
    layered: false,
    plant: (ctx) => (_l, st) => {
      const data = ctx.b.download(st.acts.logits!) as Float32Array | Float64Array;
      const first = data[0]!;
      data.copyWithin(0, 1);
      data[data.length - 1] = first;
      ctx.b.upload(st.acts.logits!, data);
    },
  },
} satisfies Record<string, FaultDef>;

export type FaultName = keyof typeof FAULTS;
export const FAULT_NAMES = Object.keys(FAULTS) as FaultName[];

export function faultInfo(name: FaultName): Readonly<FaultDef> {
  return FAULTS[name];
}

export function faultLabel(spec: FaultSpec): string {
  return spec.layer === undefined ? spec.name : `${spec.name}@${spec.layer}`;
}

/** NAME or NAME@LAYER; the layer is checked against the model later. Returns an error message or the spec. */
export function parseFaultSpec(s: string): FaultSpec | string {
  const m = /^([a-z0-9_]+)(?:@(\d+))?$/.exec(s.trim());
  const name = m?.[1];
  if (!m || !name || !(FAULT_NAMES as string[]).includes(name)) {
    return `unknown fault '${s}' (allowed: ${FAULT_NAMES.join(', ')}, each optionally @LAYER; npm run selftest -- --list describes them)`;
  }
  const def = FAULTS[name as FaultName];
  if (m[2] !== undefined && !def.layered) return `fault '${name}' acts outside the layers and takes no @LAYER`;
  return m[2] === undefined ? { name: name as FaultName } : { name: name as FaultName, layer: Number(m[2]) };
}

/**
 * Where the first mismatch of a planted fault must be when `traced` points
 * are traced: (layer, point), layer null for final points; null when none of
 * the points it corrupts is traced.
 */
export function expectedMismatch(spec: FaultSpec, traced: ReadonlySet<Point>): { layer: number | null; point: Point } | null {
  const def: FaultDef = FAULTS[spec.name];
  const point = def.corrupts.find((p) => traced.has(p));
  if (point === undefined) return null;
  if (!def.layered) return { layer: point === 'logits' ? null : 0, point };
  return { layer: spec.layer ?? 0, point };
}

/**
 * The first differing KV cache row the check must name after E1's decode0 at
 * position pos (layer null: the cache equals the prefill's).
 */
export function expectedKvRow(spec: FaultSpec, pos: number, nLayers: number): { layer: number | null; position: number | null } {
  const def: FaultDef = FAULTS[spec.name];
  const layer = def.layered ? (spec.layer ?? 0) : 0;
  if (def.kv === 'none') return { layer: null, position: null };
  if (def.kv === 'next') return layer + 1 < nLayers ? { layer: layer + 1, position: pos } : { layer: null, position: null };
  return { layer, position: pos - def.kv.row };
}

/** Throws UsageError when the fault cannot be planted in this engine's model. */
export function checkFault(spec: FaultSpec, engineLike: Pick<Engine, 'cfg'>, modelName: string): void {
  const nLayers = engineLike.cfg.num_hidden_layers;
  if (spec.layer !== undefined && spec.layer >= nLayers) {
    throw new UsageError(`--fault: layer ${spec.layer} is out of range for ${modelName} (allowed: 0-${nLayers - 1})`);
  }
  const def: FaultDef = FAULTS[spec.name];
  const why = def.unsupported?.(engineLike as Engine);
  if (why) throw new UsageError(`--fault: ${spec.name} cannot be planted in ${modelName}: ${why}`);
}

/** A fault planted in an engine; release() frees what it allocated. */
export interface PlantedFault extends DecodeFault {
  readonly spec: FaultSpec;
  release(): void;
}

/** Plants `spec` in `engine` (engine.fault) until release(). */
export function plantFault(engine: Engine, spec: FaultSpec): PlantedFault {
  checkFault(spec, engine, 'this model');
  const def: FaultDef = FAULTS[spec.name];
  const nLayers = engine.cfg.num_hidden_layers;
  const layers = spec.layer === undefined ? Array.from({ length: nLayers }, (_, i) => i) : [spec.layer];
  const ctx: Ctx = { b: engine.backend, engine, owned: [] };
  const act = def.plant?.(ctx, layers);
  const inLayer = new Set(layers);
  const actsAt = def.corrupts[0];
  const planted: PlantedFault = {
    spec,
    tokens: def.tokens ? (ids) => def.tokens!(ids, engine.cfg.vocab_size) : undefined,
    cacheAccess: def.cacheAccess ? (layer, pos) => (inLayer.has(layer) ? def.cacheAccess!(pos) : undefined) : undefined,
    after(layer, point, st) {
      if (!act || point !== actsAt) return;
      if (def.layered ? layer !== null && inLayer.has(layer) : layer === null) act(layer, st);
    },
    release() {
      if (engine.fault === planted) engine.fault = undefined;
      for (const t of ctx.owned.splice(0)) t.free();
    },
  };
  engine.fault = planted;
  return planted;
}
