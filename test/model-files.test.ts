// Real model files written from a synthetic model (HF directories with single
// and sharded safetensors, GGUF with each dtype) must trace exactly like the
// synthetic model itself.
import { join } from 'node:path';
import llama3Tokenizer from 'llama3-tokenizer-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeRuns } from '../src/analyze/analyze.js';
import { loadTraceFile, type TraceRun } from '../src/analyze/load.js';
import { LoaderError } from '../src/loaders/errors.js';
import { LLAMA3_ROPE_SCALING } from '../src/model/config.js';
import { SYNTHETIC_MODELS, type SyntheticModelSpec } from '../src/model/models.js';
import { ropeInvFreq } from '../src/model/rope.js';
import { ggufSource, hfSource, syntheticSource, type ModelSource } from '../src/model/source.js';
import { resolveTraceOptions } from '../src/options.js';
import { PROMPT_NAMES } from '../src/prompts.js';
import { runTrace, type TracePlan } from '../src/run.js';
import { LLAMA3_TOKENIZER } from '../src/tokenizer.js';
import { f16ToNumber, quantizeQ8_0, writeGguf } from './loaders/writers.js';
import { bf16ToF32, bytesOf, exportWeights, writeHfDir, type NamedTensor } from './hf-model.js';
import { tempDir } from './helpers.js';

/** llama.cpp's converter permutation of Q/K rows (the inverse of what the loader undoes). */
function permuteRows(bits: Uint16Array, rows: number, cols: number, nHeads: number): Uint16Array {
  const out = new Uint16Array(bits.length);
  const d = rows / nHeads;
  const half = d / 2;
  for (let h = 0; h < nHeads; h++)
    for (let s = 0; s < 2; s++)
      for (let j = 0; j < half; j++) {
        const hf = h * d + s * half + j;
        const gg = h * d + 2 * j + s;
        out.set(bits.subarray(hf * cols, (hf + 1) * cols), gg * cols);
      }
  return out;
}


const GGML = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
const T = { U32: 4, F32: 6, STRING: 8, ARRAY: 9 } as const;

interface GgufTensor {
  name: string;
  ggmlType: number;
  ne: number[];
  data: Uint8Array;
}

/** A tensor's storage: a GGML type, or F32 holding the f16 rounding of the bf16 values. */
type Storage = keyof typeof GGML | 'F32_OF_F16';

function writeGgufModel(
  path: string,
  spec: SyntheticModelSpec,
  tensors: NamedTensor[],
  dtype: keyof typeof GGML,
  extra: GgufTensor[] = [],
  typeOf: (name: string) => Storage | undefined = () => undefined,
): void {
  const c = spec.config;
  const vocab = (llama3Tokenizer as unknown as { vocabById: string[] }).vocabById;
  const metadata = [
    { key: 'general.architecture', type: T.STRING, value: 'llama' },
    { key: 'general.alignment', type: T.U32, value: 32 },
    { key: 'llama.block_count', type: T.U32, value: c.num_hidden_layers },
    { key: 'llama.context_length', type: T.U32, value: c.max_position_embeddings },
    { key: 'llama.embedding_length', type: T.U32, value: c.hidden_size },
    { key: 'llama.feed_forward_length', type: T.U32, value: c.intermediate_size },
    { key: 'llama.attention.head_count', type: T.U32, value: c.num_attention_heads },
    { key: 'llama.attention.head_count_kv', type: T.U32, value: c.num_key_value_heads },
    { key: 'llama.rope.dimension_count', type: T.U32, value: c.head_dim },
    { key: 'llama.rope.freq_base', type: T.F32, value: c.rope_theta },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: T.F32, value: c.rms_norm_eps },
    { key: 'llama.vocab_size', type: T.U32, value: c.vocab_size },
    { key: 'tokenizer.ggml.model', type: T.STRING, value: 'gpt2' },
    { key: 'tokenizer.ggml.tokens', type: T.ARRAY, value: { type: T.STRING, values: vocab } },
  ];
  const gt = tensors.map((t) => {
    let bits = t.bits;
    if (t.gguf.endsWith('attn_q.weight')) bits = permuteRows(bits, t.shape[0]!, t.shape[1]!, c.num_attention_heads);
    if (t.gguf.endsWith('attn_k.weight')) bits = permuteRows(bits, t.shape[0]!, t.shape[1]!, c.num_key_value_heads);
    const ne = [...t.shape].reverse();
    const is2d = t.shape.length === 2;
    const type: Storage = typeOf(t.gguf) ?? (dtype === 'Q8_0' && !is2d ? 'F32' : dtype); // llama.cpp keeps norms in F32
    const f32 = bf16ToF32(bits);
    const data =
      type === 'BF16' ? bytesOf(bits)
      : type === 'F32' ? bytesOf(f32)
      : type === 'F16' ? bytesOf(Uint16Array.from(bits, (h) => BF16_TO_F16[h]!))
      : type === 'F32_OF_F16' ? bytesOf(Float32Array.from(bits, (h) => f16ToNumber(BF16_TO_F16[h]!)))
      : quantizeQ8_0(f32);
    return { name: t.gguf, ggmlType: GGML[type === 'F32_OF_F16' ? 'F32' : type], ne, data };
  });
  writeGguf(path, { version: 3, alignment: 32, metadata, tensors: [...gt, ...extra] });
}

/** bf16 bits -> f16 bits (round to nearest even), for every bf16 value. */
const BF16_TO_F16 = Uint16Array.from({ length: 65536 }, (_, h) => f16Bits(new Float32Array(new Uint32Array([h << 16]).buffer)[0]!));

function f16Bits(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a < 0x38800000) {
    if (a < 0x33000000) return sign;
    const e = a >>> 23;
    const m = (a & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && r & 1)) r++;
    return sign | r;
  }
  let r = a - 0x38000000;
  r += 0xfff + ((r >>> 13) & 1);
  return sign | (r >>> 13);
}

/** Traces `model` as `npm run trace` would, returning the run. */
function trace(model: ModelSource, prompts: string[]): TraceRun {
  const out = join(tempDir(), 't.jsonl');
  const opts = resolveTraceOptions({ prompt: prompts.join(','), out, layers: '0,1,15,31', backend: 'cpu' }, {});
  const plan: TracePlan = {
    opts,
    model,
    layers: [0, 1, 15, 31],
    prompts: prompts.map((name) => ({ name, ids: model.tokenizer.prompt(name) })),
    out,
    runId: 'files',
  };
  runTrace(plan);
  return loadTraceFile(out)[0]!;
}

const hashes = (run: TraceRun) => run.stages.map((s) => `${s.prompt} ${s.phase} ${s.layer} ${s.point} ${s.hash}`);

describe('model files', () => {
  const tiny = SYNTHETIC_MODELS['synthetic:tiny']!;
  // GGUF carries Llama 3 RoPE scaling as rope_freqs divisors, which are not bit-exact; the
  // exactness check uses the same model without scaling.
  const plain: SyntheticModelSpec = { ...tiny, name: 'synthetic:tiny-plain-rope', config: { ...tiny.config, rope_scaling: null } };
  let tinyTensors: NamedTensor[];
  let plainTensors: NamedTensor[];
  let reference: TraceRun;
  let plainReference: TraceRun;
  const prompts = ['p0_short', 'p4_sys'];

  beforeAll(() => {
    tinyTensors = exportWeights(tiny);
    plainTensors = exportWeights(plain);
    reference = trace(syntheticSource(tiny), prompts);
    plainReference = trace(syntheticSource(plain), prompts);
  });

  it('HF directory, single safetensors file: the same hashes as the synthetic model', () => {
    const dir = join(tempDir(), 'hf');
    writeHfDir(dir, tiny, tinyTensors, 1);
    const model = hfSource(dir);
    for (const name of PROMPT_NAMES) expect(model.tokenizer.prompt(name), name).toEqual(LLAMA3_TOKENIZER.prompt(name));
    expect(model.tokenizer.text('¿Qué tal? 123 tokens\n\n')).toEqual(LLAMA3_TOKENIZER.text('¿Qué tal? 123 tokens\n\n'));
    expect(model.config).toEqual(tiny.config);
    const run = trace(model, prompts);
    expect(hashes(run)).toEqual(hashes(reference));
  });

  it('HF directory, sharded safetensors with an index: the same hashes', () => {
    const dir = join(tempDir(), 'sharded');
    writeHfDir(dir, tiny, tinyTensors, 3);
    expect(hashes(trace(hfSource(dir), prompts))).toEqual(hashes(reference));
  });

  for (const dtype of ['BF16', 'F32'] as const) {
    it(`GGUF v3 with ${dtype} tensors and llama.cpp's Q/K row order: the same hashes`, () => {
      const path = join(tempDir(), `m-${dtype}.gguf`);
      writeGgufModel(path, plain, plainTensors, dtype);
      const model = ggufSource(path);
      // GGUF stores rms_norm_eps as f32; the kernels use it in f32 either way.
      expect(model.config).toEqual({ ...plain.config, rms_norm_eps: Math.fround(plain.config.rms_norm_eps) });
      expect(hashes(trace(model, prompts))).toEqual(hashes(plainReference));
    });
  }

  for (const dtype of ['F16', 'Q8_0'] as const) {
    it(`GGUF v3 with ${dtype} tensors: E1 bit-identical, logits close to the bf16 model`, () => {
      const path = join(tempDir(), `m-${dtype}.gguf`);
      writeGgufModel(path, plain, plainTensors, dtype);
      const run = trace(ggufSource(path), prompts);
      for (const r of analyzeRuns([run])) expect(r.first_mismatch_stage).toBe('NONE');
      // F16 rounds a few tiny weights; Q8_0 quantizes every matrix: the model stays close.
      const top = (t: TraceRun) => t.stages.filter((s) => s.point === 'logits' && s.phase === 'prefill_last').map((s) => s.stats.rms);
      top(run).forEach((rms, i) => expect(Math.abs(rms / top(plainReference)[i]! - 1)).toBeLessThan(dtype === 'F16' ? 1e-3 : 0.1));
    });
  }

  // Q, K and V (gate and up) load into one stacked weight; parts of different
  // dtypes are widened to f32 exactly. A model whose Q is bf16, K f32 and V
  // f16 must give the bits of one stored all in f32 with the same values.
  it('stacked projections whose parts differ in dtype: widened exactly, the same hashes as all-f32', () => {
    const mixed = join(tempDir(), 'mixed.gguf');
    const allF32 = join(tempDir(), 'f32.gguf');
    writeGgufModel(mixed, plain, plainTensors, 'BF16', [], (name) =>
      name.endsWith('attn_k.weight') || name.endsWith('ffn_up.weight') ? 'F32'
      : name.endsWith('attn_v.weight') || name.endsWith('ffn_gate.weight') ? 'F16'
      : undefined,
    );
    writeGgufModel(allF32, plain, plainTensors, 'F32', [], (name) =>
      name.endsWith('attn_v.weight') || name.endsWith('ffn_gate.weight') ? 'F32_OF_F16' : undefined,
    );
    const model = ggufSource(mixed);
    expect(model.weightDtype).toBe('mixed');
    const run = trace(model, prompts);
    expect(hashes(run)).toEqual(hashes(trace(ggufSource(allF32), prompts)));
    // The f16 rounding of V and gate is visible, so the widening was not a no-op.
    expect(hashes(run)).not.toEqual(hashes(plainReference));
  });

  it('GGUF rope_freqs carry Llama 3 scaling to within f32 rounding', () => {
    const path = join(tempDir(), 'rope.gguf');
    const scaled = ropeInvFreq(tiny.config);
    const unscaled = ropeInvFreq(plain.config);
    const factors = Float32Array.from(unscaled, (u, i) => u / scaled[i]!);
    writeGgufModel(path, plain, plainTensors, 'BF16', [
      { name: 'rope_freqs.weight', ggmlType: GGML.F32, ne: [factors.length], data: bytesOf(factors) },
    ]);
    const inv = ggufSource(path).invFreq;
    inv.forEach((v, i) => expect(Math.abs(v / scaled[i]! - 1)).toBeLessThan(2e-7));
    expect(LLAMA3_ROPE_SCALING.factor).toBe(8);
  });

  it('names a missing tensor and a shape unlike config.json', () => {
    const dir = join(tempDir(), 'broken');
    const missing = tinyTensors.filter((t) => t.key !== 'model.layers.7.mlp.up_proj.weight');
    writeHfDir(dir, tiny, missing, 1);
    expect(() => hfSource(dir)).toThrow(LoaderError);
    expect(() => hfSource(dir)).toThrow(/model\.layers\.7\.mlp\.up_proj\.weight: missing from the checkpoint/);

    const dir2 = join(tempDir(), 'shape');
    writeHfDir(dir2, { ...tiny, config: { ...tiny.config, intermediate_size: 128 } }, tinyTensors, 1);
    expect(() => hfSource(dir2)).toThrow(/model\.layers\.0\.mlp\.gate_proj\.weight: shape \[192,64\] does not match config\.json, which needs \[128,64\]/);
  });
});
