// The JSONL trace format. Every line is one of these records; `stage` records
// point at their full row in the sidecar file so comparisons are exact.
import { z } from 'zod';
import { PHASE_RE, POINTS } from './points.js';

export const TRACE_FORMAT_VERSION = 1;

/** JSON has no NaN or Infinity: they are written as these strings. */
export const JsonNumber = z.union([z.number(), z.enum(['NaN', 'Infinity', '-Infinity'])]);
export type JsonNumber = z.infer<typeof JsonNumber>;

export function toJsonNumber(v: number): JsonNumber {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return v;
}

export function fromJsonNumber(v: JsonNumber): number {
  return typeof v === 'number' ? v : v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : -Infinity;
}

const int = z.number().int();
const nonneg = int.nonnegative();

export const ExpSchema = z.enum(['E0', 'E1']);
export type Exp = z.infer<typeof ExpSchema>;

const Position = {
  run_id: z.string().min(1),
  prompt: z.string().min(1),
  exp: ExpSchema,
  phase: z.string().regex(PHASE_RE),
  token_id: nonneg,
  token_index: nonneg,
  pos_id: nonneg,
  seq_len: int.positive(),
};

export const StatsSchema = z.object({
  mean: z.number(),
  abs_mean: z.number(),
  rms: z.number(),
  min: z.number(),
  max: z.number(),
  nan: nonneg,
  inf: nonneg,
});

export const StageRecordSchema = z.object({
  type: z.literal('stage'),
  ...Position,
  layer: nonneg.nullable(),
  point: z.enum(POINTS),
  /** Attention head of per-head points (scores, probs, pv). */
  head: nonneg.optional(),
  shape: z.array(int.positive()),
  dtype: z.enum(['f32', 'f64']),
  stats: StatsSchema,
  hash: z.string().regex(/^[0-9a-f]{16}$/),
  sample: z.object({ indices: z.array(nonneg), values: z.array(JsonNumber) }),
  topk: z.object({ ids: z.array(nonneg), values: z.array(JsonNumber) }).optional(),
  row: z.object({ file: z.string().min(1), offset: nonneg, bytes: int.positive() }),
});

export const InputRecordSchema = z.object({
  type: z.literal('input'),
  ...Position,
  embedding_hash: z.string().regex(/^[0-9a-f]{16}$/),
});

/** The decode path's KV cache against a prefill's over the same tokens (--kv-check). */
export const KvCheckSchema = z.object({
  positions: int.positive(),
  layers: int.positive(),
  kv_heads: int.positive(),
  equal: z.boolean(),
  /** The first differing row in (layer, position, kv head, k before v) order. */
  first: z
    .object({ layer: nonneg, position: nonneg, kv_head: nonneg, tensor: z.enum(['k', 'v']), mae: z.number(), max_abs: z.number() })
    .nullable(),
  /** How many (layer, position, kv head, k/v) rows differ. */
  differing: nonneg,
  layers_differing: z.array(nonneg),
});
export type KvCheck = z.infer<typeof KvCheckSchema>;

export const KvCheckRecordSchema = z.object({
  type: z.literal('kv_check'),
  run_id: z.string().min(1),
  prompt: z.string().min(1),
  exp: ExpSchema,
  /** The decode phase after which the cache was checked. */
  phase: z.string().regex(PHASE_RE),
  ...KvCheckSchema.shape,
});

export const HeaderRecordSchema = z.object({
  type: z.literal('header'),
  format: z.literal(TRACE_FORMAT_VERSION),
  run_id: z.string().min(1),
  created_at: z.string(),
  tool: z.object({ name: z.string(), version: z.string() }),
  model: z.object({ name: z.string(), weight_dtype: z.string(), seed: z.string().optional() }),
  config: z.record(z.string(), z.unknown()),
  backend: z.string(),
  device: z.string(),
  git_commit: z.string().nullable(),
  options: z.record(z.string(), z.unknown()),
  prompts: z.array(z.object({ name: z.string(), n_tokens: int.positive(), ids: z.array(nonneg).optional() })),
});

export const ResultSchema = z.object({
  prompt: z.string(),
  exp: ExpSchema,
  n_tokens: int.positive(),
  prefill_last_top1: nonneg,
  decode_top1: z.array(nonneg),
  generated_text: z.string(),
  prefill_ms: z.number(),
  decode_ms: z.array(z.number()),
});
export type RunResult = z.infer<typeof ResultSchema>;

export const EndRecordSchema = z.object({
  type: z.literal('end'),
  run_id: z.string().min(1),
  status: z.literal('ok'),
  elapsed_ms: z.number(),
  results: z.array(ResultSchema),
});

export const TraceRecordSchema = z.discriminatedUnion('type', [
  HeaderRecordSchema,
  StageRecordSchema,
  InputRecordSchema,
  KvCheckRecordSchema,
  EndRecordSchema,
]);

export type StageRecord = z.infer<typeof StageRecordSchema>;
export type InputRecord = z.infer<typeof InputRecordSchema>;
export type HeaderRecord = z.infer<typeof HeaderRecordSchema>;
export type EndRecord = z.infer<typeof EndRecordSchema>;
export type KvCheckRecord = z.infer<typeof KvCheckRecordSchema>;
export type TraceRecord = z.infer<typeof TraceRecordSchema>;
