// Where a model comes from: a built-in synthetic model, a Hugging Face Llama
// directory (config.json, safetensors, tokenizer.json) or a GGUF file. Each
// source knows its config before any weight is read, so the run can check
// memory first, then streams each tensor to the backend in chunks (stream.ts).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LoaderError } from '../loaders/errors.js';
import { dequantizeQ8_0, f16ToNumber, readGguf, readGgufTensor, type GgufFile, type GgufTensorInfo } from '../loaders/gguf.js';
import { openSafetensorsDir, type TensorInfo } from '../loaders/safetensors.js';
import type { Backend, Tensor, WeightDType } from '../native.js';
import { hfTokenizer, LLAMA3_TOKENIZER, type PromptTokenizer } from '../tokenizer.js';
import { LlamaConfigSchema, type LlamaConfig } from './config.js';
import { SYNTHETIC_MODELS, type SyntheticModelSpec } from './models.js';
import { ropeInvFreq } from './rope.js';
import { tensorSpan, WeightStreamer, type RowSpan, type RowStage } from './stream.js';
import { syntheticWeights, type LayerWeights, type ModelWeights } from './weights.js';

export interface LoadProgress {
  (doneBytes: number, totalBytes: number): void;
}

export interface ModelSource {
  /** As given by the user: synthetic:tiny, a directory or a .gguf path. */
  name: string;
  kind: 'synthetic' | 'hf' | 'gguf';
  config: LlamaConfig;
  /** f32/f16/bf16, or "mixed". */
  weightDtype: string;
  /** Bytes the weights take on the backend. */
  weightBytes: number;
  seed?: bigint;
  tokenizer: PromptTokenizer;
  /** RoPE inverse frequencies (GGUF files may carry their own factors). */
  invFreq: Float64Array;
  load(b: Backend, progress?: LoadProgress): ModelWeights;
}

const DTYPE_BYTES: Record<string, number> = { f32: 4, f16: 2, bf16: 2 };

/** Parameters of a Llama with this config. */
export function paramCount(c: LlamaConfig): number {
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const perLayer = c.hidden_size * (q + 2 * kv) + q * c.hidden_size + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size;
  return c.num_hidden_layers * perLayer + c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2) + c.hidden_size;
}

export function syntheticSource(spec: SyntheticModelSpec): ModelSource {
  return {
    name: spec.name,
    kind: 'synthetic',
    config: spec.config,
    weightDtype: spec.weightDtype,
    weightBytes: paramCount(spec.config) * DTYPE_BYTES[spec.weightDtype]!,
    seed: spec.seed,
    tokenizer: LLAMA3_TOKENIZER,
    invFreq: ropeInvFreq(spec.config),
    load: (b) => syntheticWeights(b, spec.config, spec.weightDtype, spec.seed),
  };
}

/** The tensors a Llama needs, by role, with their expected shapes. */
function expectedTensors(c: LlamaConfig): { key: string; shape: number[] }[] {
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const out = [{ key: 'embed', shape: [c.vocab_size, c.hidden_size] }];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    out.push(
      { key: `${l}.attnNorm`, shape: [c.hidden_size] },
      { key: `${l}.wq`, shape: [q, c.hidden_size] },
      { key: `${l}.wk`, shape: [kv, c.hidden_size] },
      { key: `${l}.wv`, shape: [kv, c.hidden_size] },
      { key: `${l}.wo`, shape: [c.hidden_size, q] },
      { key: `${l}.ffnNorm`, shape: [c.hidden_size] },
      { key: `${l}.wGate`, shape: [c.intermediate_size, c.hidden_size] },
      { key: `${l}.wUp`, shape: [c.intermediate_size, c.hidden_size] },
      { key: `${l}.wDown`, shape: [c.hidden_size, c.intermediate_size] },
    );
  }
  out.push({ key: 'finalNorm', shape: [c.hidden_size] });
  if (!c.tie_word_embeddings) out.push({ key: 'lmHead', shape: [c.vocab_size, c.hidden_size] });
  return out;
}

const HF_NAMES: Record<string, string> = {
  attnNorm: 'input_layernorm.weight',
  wq: 'self_attn.q_proj.weight',
  wk: 'self_attn.k_proj.weight',
  wv: 'self_attn.v_proj.weight',
  wo: 'self_attn.o_proj.weight',
  ffnNorm: 'post_attention_layernorm.weight',
  wGate: 'mlp.gate_proj.weight',
  wUp: 'mlp.up_proj.weight',
  wDown: 'mlp.down_proj.weight',
};

const GGUF_NAMES: Record<string, string> = {
  attnNorm: 'attn_norm.weight',
  wq: 'attn_q.weight',
  wk: 'attn_k.weight',
  wv: 'attn_v.weight',
  wo: 'attn_output.weight',
  ffnNorm: 'ffn_norm.weight',
  wGate: 'ffn_gate.weight',
  wUp: 'ffn_up.weight',
  wDown: 'ffn_down.weight',
};

function hfName(key: string): string {
  if (key === 'embed') return 'model.embed_tokens.weight';
  if (key === 'finalNorm') return 'model.norm.weight';
  if (key === 'lmHead') return 'lm_head.weight';
  const [l, role] = key.split('.') as [string, string];
  return `model.layers.${l}.${HF_NAMES[role]}`;
}

function ggufName(key: string): string {
  if (key === 'embed') return 'token_embd.weight';
  if (key === 'finalNorm') return 'output_norm.weight';
  if (key === 'lmHead') return 'output.weight';
  const [l, role] = key.split('.') as [string, string];
  return `blk.${l}.${GGUF_NAMES[role]}`;
}

/** Assembles ModelWeights from tensors uploaded by role key. */
function assemble(c: LlamaConfig, get: (key: string) => Tensor): ModelWeights {
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const t = (role: string) => get(`${l}.${role}`);
    layers.push({
      attnNorm: t('attnNorm'),
      wqkv: t('wqkv'),
      wq: t('wq'),
      wk: t('wk'),
      wv: t('wv'),
      wo: t('wo'),
      ffnNorm: t('ffnNorm'),
      wGateUp: t('wGateUp'),
      wGate: t('wGate'),
      wUp: t('wUp'),
      wDown: t('wDown'),
    });
  }
  const embed = get('embed');
  return { embed, layers, finalNorm: get('finalNorm'), lmHead: c.tie_word_embeddings ? embed : get('lmHead') };
}

/** The one weight dtype, or "mixed". */
const dtypeLabel = (dtypes: Set<string>) => (dtypes.size === 1 ? [...dtypes][0]! : 'mixed');

const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

// ---------------------------------------------------------------- Hugging Face

/** config.json of a Llama checkpoint in our schema (HF defaults filled in). */
export function hfConfig(file: string): LlamaConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new LoaderError(file, null, `cannot read a JSON config (${(e as Error).message})`);
  }
  const arch = raw.architectures;
  if (Array.isArray(arch) && !arch.includes('LlamaForCausalLM')) {
    throw new LoaderError(file, 'architectures', `${JSON.stringify(arch)} is not LlamaForCausalLM`);
  }
  const heads = Number(raw.num_attention_heads);
  // transformers 5 writes rope_parameters (theta and scaling together); earlier versions rope_theta and rope_scaling.
  const ropeParams = raw.rope_parameters as Record<string, unknown> | undefined;
  const scaling = (ropeParams && ropeParams.rope_type !== 'default' ? ropeParams : raw.rope_scaling) as
    | Record<string, unknown>
    | null
    | undefined;
  let ropeScaling: unknown = null;
  if (scaling) {
    const type = scaling.rope_type ?? scaling.type;
    if (type !== 'llama3') throw new LoaderError(file, 'rope_scaling', `rope_type '${String(type)}' is not supported (allowed: llama3, or none)`);
    ropeScaling = {
      rope_type: 'llama3',
      factor: scaling.factor,
      low_freq_factor: scaling.low_freq_factor,
      high_freq_factor: scaling.high_freq_factor,
      original_max_position_embeddings: scaling.original_max_position_embeddings,
    };
  }
  const parsed = LlamaConfigSchema.safeParse({
    vocab_size: raw.vocab_size,
    hidden_size: raw.hidden_size,
    intermediate_size: raw.intermediate_size,
    num_hidden_layers: raw.num_hidden_layers,
    num_attention_heads: heads,
    num_key_value_heads: raw.num_key_value_heads ?? heads,
    head_dim: raw.head_dim ?? Number(raw.hidden_size) / heads,
    rms_norm_eps: raw.rms_norm_eps ?? 1e-6,
    rope_theta: ropeParams?.rope_theta ?? raw.rope_theta ?? 10000,
    rope_scaling: ropeScaling,
    max_position_embeddings: raw.max_position_embeddings ?? 2048,
    tie_word_embeddings: raw.tie_word_embeddings ?? false,
  });
  if (!parsed.success) {
    const iss = parsed.error.issues[0]!;
    throw new LoaderError(file, iss.path.join('.') || null, iss.message);
  }
  return parsed.data;
}

export function hfSource(dir: string): ModelSource {
  const config = hfConfig(join(dir, 'config.json'));
  const tensors = openSafetensorsDir(dir);
  const want = expectedTensors(config);
  const infos = new Map<string, TensorInfo>();
  const dtypes = new Set<string>();
  let bytes = 0;
  for (const { key, shape } of want) {
    const name = hfName(key);
    const info = tensors.get(name);
    if (!info) throw new LoaderError(dir, name, 'missing from the checkpoint');
    if (!(info.dtype in DTYPE_BYTES)) throw new LoaderError(info.file, name, `dtype ${info.dtype} is not supported (allowed: f32, f16, bf16)`);
    if (!sameShape(info.shape, shape)) {
      throw new LoaderError(info.file, name, `shape [${info.shape}] does not match config.json, which needs [${shape}]`);
    }
    infos.set(key, info);
    dtypes.add(info.dtype);
    bytes += info.bytes;
  }
  const tokFile = join(dir, 'tokenizer.json');
  let tokenizer: PromptTokenizer;
  if (existsSync(tokFile)) {
    tokenizer = hfTokenizer(dir);
  } else if (config.vocab_size === 128256) {
    tokenizer = LLAMA3_TOKENIZER;
  } else {
    throw new LoaderError(dir, 'tokenizer.json', 'missing (the bundled Llama 3 tokenizer fits only a 128256-token vocabulary)');
  }
  return {
    name: dir,
    kind: 'hf',
    config,
    weightDtype: dtypeLabel(dtypes),
    weightBytes: bytes,
    tokenizer,
    invFreq: ropeInvFreq(config),
    load(b, progress) {
      return streamAll(b, config, bytes, progress, (key) => {
        const info = infos.get(key)!;
        return { dtype: info.dtype as WeightDType, shape: info.shape, span: tensorSpan(info.file, info.name, info.offset, info.shape, info.bytes) };
      });
    },
  };
}

// ---------------------------------------------------------------- GGUF

function meta(g: GgufFile, key: string, required: boolean): number | undefined {
  const v = g.metadata.get(key);
  if (v === undefined) {
    if (required) throw new LoaderError(g.path, key, 'missing');
    return undefined;
  }
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new LoaderError(g.path, key, `must be a number, got ${JSON.stringify(String(v))}`);
  return n;
}

/**
 * llama.cpp's converter interleaves the two halves of each head's Q and K rows
 * (its RoPE rotates adjacent pairs); ours rotates halves, as HF does. Undo it
 * for `rows` rows (whole heads of headRows): HF row h*d + s*d/2 + j is GGUF row
 * h*d + 2j + s.
 */
export function unpermuteRows(src: Buffer, dst: Buffer, rows: number, rowBytes: number, headRows: number): void {
  const half = headRows / 2;
  for (let h = 0; h < rows / headRows; h++)
    for (let s = 0; s < 2; s++)
      for (let j = 0; j < half; j++) {
        const from = (h * headRows + 2 * j + s) * rowBytes;
        src.copy(dst, (h * headRows + s * half + j) * rowBytes, from, from + rowBytes);
      }
}

/** How one expected tensor comes from its file. */
interface TensorPlan {
  dtype: WeightDType;
  shape: number[];
  span: RowSpan;
  stages?: RowStage[];
}

/** Projections that read the same input, stacked into one weight at load so one matmul computes them. */
const FUSED: readonly { key: 'wqkv' | 'wGateUp'; parts: readonly string[] }[] = [
  { key: 'wqkv', parts: ['wq', 'wk', 'wv'] },
  { key: 'wGateUp', parts: ['wGate', 'wUp'] },
];

/** Whether the tensor of a role key is read by matmul (the embedding when tied: it is the classifier). */
function isMatmulWeight(c: LlamaConfig, key: string): boolean {
  if (key === 'embed') return c.tie_word_embeddings;
  if (key === 'lmHead') return true;
  const role = key.split('.')[1];
  return role !== undefined && role !== 'attnNorm' && role !== 'ffnNorm';
}

/** f16 or bf16 rows widened to f32 (exact), for a fused weight whose parts differ in dtype. */
function widenToF32(dtype: WeightDType, cols: number): RowStage {
  return {
    rowBytes: cols * 4,
    groupRows: 1,
    apply(src, dst, rows) {
      const n = rows * cols;
      for (let i = 0; i < n; i++) {
        const h = src.readUInt16LE(2 * i);
        // bf16 is the top half of an f32's bits; f16 decodes exactly to a number f32 holds.
        if (dtype === 'bf16') dst.writeUInt32LE(h * 0x10000, 4 * i);
        else dst.writeFloatLE(f16ToNumber(h), 4 * i);
      }
    },
  };
}

/**
 * Streams every expected tensor (by role key) through one WeightStreamer and
 * assembles the model. The parts of a fused projection land side by side in
 * one allocation (widened to f32 if their dtypes differ) and stay reachable
 * as row views of it.
 */
function streamAll(
  b: Backend,
  c: LlamaConfig,
  total: number,
  progress: LoadProgress | undefined,
  plan: (key: string) => TensorPlan,
): ModelWeights {
  let done = 0;
  const s = new WeightStreamer(b, (n) => {
    done += n;
    progress?.(done, total);
  });
  try {
    const up = new Map<string, Tensor>();
    const fusedPart = new Set(FUSED.flatMap((f) => f.parts));
    for (const { key } of expectedTensors(c)) {
      const role = key.split('.')[1];
      if (role !== undefined && fusedPart.has(role)) continue;
      const p = plan(key);
      up.set(key, s.tensor(p.dtype, p.shape, p.span, p.stages, isMatmulWeight(c, key)));
    }
    for (let l = 0; l < c.num_hidden_layers; l++) {
      for (const f of FUSED) {
        const plans = f.parts.map((r) => plan(`${l}.${r}`));
        const same = plans.every((p) => p.dtype === plans[0]!.dtype);
        const dtype: WeightDType = same ? plans[0]!.dtype : 'f32';
        const rows = plans.reduce((n, p) => n + p.shape[0]!, 0);
        const cols = plans[0]!.shape[1]!;
        const fused = b.alloc(dtype, [rows, cols], { matmul: true });
        let row = 0;
        f.parts.forEach((r, i) => {
          const p = plans[i]!;
          const stages = [...(p.stages ?? []), ...(p.dtype === dtype ? [] : [widenToF32(p.dtype, cols)])];
          s.fill(fused, row * cols * DTYPE_BYTES[dtype]!, p.span, stages);
          up.set(`${l}.${r}`, fused.rows(row, p.shape[0]!));
          row += p.shape[0]!;
        });
        up.set(`${l}.${f.key}`, fused);
      }
    }
    return assemble(c, (k) => up.get(k)!);
  } finally {
    s.close();
  }
}

export function ggufSource(path: string): ModelSource {
  const g = readGguf(path);
  const arch = g.metadata.get('general.architecture');
  if (arch !== 'llama') throw new LoaderError(path, 'general.architecture', `'${String(arch)}' is not llama`);
  const heads = meta(g, 'llama.attention.head_count', true)!;
  const hidden = meta(g, 'llama.embedding_length', true)!;
  const embd = g.tensors.get('token_embd.weight');
  if (!embd) throw new LoaderError(path, 'token_embd.weight', 'missing');
  const tokens = g.metadata.get('tokenizer.ggml.tokens');
  const vocab = meta(g, 'llama.vocab_size', false) ?? (Array.isArray(tokens) ? tokens.length : embd.shape[0]!);
  const parsed = LlamaConfigSchema.safeParse({
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: meta(g, 'llama.feed_forward_length', true),
    num_hidden_layers: meta(g, 'llama.block_count', true),
    num_attention_heads: heads,
    num_key_value_heads: meta(g, 'llama.attention.head_count_kv', false) ?? heads,
    head_dim: meta(g, 'llama.rope.dimension_count', false) ?? hidden / heads,
    rms_norm_eps: meta(g, 'llama.attention.layer_norm_rms_epsilon', true),
    rope_theta: meta(g, 'llama.rope.freq_base', false) ?? 10000,
    rope_scaling: null,
    max_position_embeddings: meta(g, 'llama.context_length', false) ?? 2048,
    tie_word_embeddings: !g.tensors.has('output.weight'),
  });
  if (!parsed.success) {
    const iss = parsed.error.issues[0]!;
    throw new LoaderError(path, iss.path.join('.') || null, iss.message);
  }
  const config = parsed.data;
  const infos = new Map<string, GgufTensorInfo>();
  let bytes = 0;
  const dtypes = new Set<string>();
  for (const { key, shape } of expectedTensors(config)) {
    const name = ggufName(key);
    const info = g.tensors.get(name);
    if (!info) throw new LoaderError(path, name, 'missing from the file');
    if (!sameShape(info.shape, shape)) {
      throw new LoaderError(path, name, `shape [${info.shape}] does not match the llama.* metadata, which needs [${shape}]`);
    }
    if (!['F32', 'F16', 'BF16', 'Q8_0'].includes(info.typeName)) {
      throw new LoaderError(path, name, `type ${info.typeName} is not supported (allowed: F32, F16, BF16, Q8_0)`);
    }
    infos.set(key, info);
    dtypes.add(info.typeName === 'Q8_0' ? 'f32' : info.typeName.toLowerCase());
    bytes += shape.reduce((a, v) => a * v, 1) * (info.typeName === 'Q8_0' || info.typeName === 'F32' ? 4 : 2);
  }
  // Llama 3.1 scaling travels as per-dimension frequency divisors.
  const half = config.head_dim / 2;
  const invFreq = ropeInvFreq(config);
  const freqs = g.tensors.get('rope_freqs.weight');
  if (freqs) {
    const { dtype, data } = readGgufTensor(freqs);
    if (dtype !== 'f32' || data.length !== half * 4) throw new LoaderError(path, 'rope_freqs.weight', `must be f32[${half}]`);
    for (let i = 0; i < half; i++) invFreq[i] = invFreq[i]! / data.readFloatLE(i * 4);
  }
  const model = g.metadata.get('tokenizer.ggml.model');
  const llama3Vocab = Array.isArray(tokens) && tokens.length === 128256 && tokens[128000] === '<|begin_of_text|>';
  if (model !== undefined && !(model === 'gpt2' && llama3Vocab)) {
    throw new LoaderError(path, 'tokenizer.ggml.model', `'${String(model)}' with ${Array.isArray(tokens) ? tokens.length : 0} tokens: only the Llama 3 vocabulary is supported from GGUF`);
  }
  return {
    name: path,
    kind: 'gguf',
    config,
    weightDtype: dtypeLabel(dtypes),
    weightBytes: bytes,
    tokenizer: LLAMA3_TOKENIZER,
    invFreq,
    load(b, progress) {
      return streamAll(b, config, bytes, progress, (key) => {
        const info = infos.get(key)!;
        const cols = info.shape[info.shape.length - 1]!;
        const span = tensorSpan(info.file, info.name, info.offset, info.shape, info.bytes);
        const stages: RowStage[] = [];
        let dtype = info.typeName.toLowerCase() as WeightDType;
        if (info.typeName === 'Q8_0') {
          dtype = 'f32';
          stages.push({ rowBytes: cols * 4, groupRows: 1, apply: (src, dst, n) => dequantizeQ8_0(src, n * cols, dst) });
        }
        const role = key.split('.')[1];
        if (role === 'wq' || role === 'wk') {
          const headRows = config.head_dim;
          const rowBytes = cols * DTYPE_BYTES[dtype]!;
          stages.push({ rowBytes, groupRows: headRows, apply: (src, dst, n) => unpermuteRows(src, dst, n, rowBytes, headRows) });
        }
        return { dtype, shape: info.shape, span, stages };
      });
    },
  };
}

/** synthetic:NAME, a directory with config.json, or a .gguf file. Throws LoaderError or returns undefined for unknown names. */
export function openModel(name: string): ModelSource | undefined {
  const spec = SYNTHETIC_MODELS[name];
  if (spec) return syntheticSource(spec);
  if (!existsSync(name)) return undefined;
  const st = statSync(name);
  if (st.isDirectory()) {
    if (!existsSync(join(name, 'config.json'))) throw new LoaderError(name, 'config.json', 'missing: not a Hugging Face model directory');
    return hfSource(name);
  }
  if (st.isFile() && name.endsWith('.gguf')) return ggufSource(name);
  return undefined;
}
