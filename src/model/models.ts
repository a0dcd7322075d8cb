// Built-in models. Synthetic models are generated deterministically from a
// seed by the backend's fill_uniform op, so no weight file is needed and every
// backend builds bit-identical weights.
import type { WeightDType } from '../native.js';
import { LLAMA3_ROPE_SCALING, LlamaConfigSchema, type LlamaConfig } from './config.js';

export interface SyntheticModelSpec {
  name: string;
  description: string;
  config: LlamaConfig;
  weightDtype: WeightDType;
  seed: bigint;
}

export const LLAMA3_VOCAB = 128256;

export const SYNTHETIC_MODELS: Record<string, SyntheticModelSpec> = {
  'synthetic:tiny': {
    name: 'synthetic:tiny',
    description: 'Llama 3 layout at small width: 32 layers, GQA 4/2 heads of 16, hidden 64, Llama 3 vocabulary',
    config: LlamaConfigSchema.parse({
      vocab_size: LLAMA3_VOCAB,
      hidden_size: 64,
      intermediate_size: 192,
      num_hidden_layers: 32,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      rms_norm_eps: 1e-5,
      rope_theta: 500000,
      rope_scaling: LLAMA3_ROPE_SCALING,
      max_position_embeddings: 8192,
      tie_word_embeddings: false,
    }),
    weightDtype: 'bf16',
    seed: 0x67726574616e6f31n,
  },
  'synthetic:llama3-8b': {
    name: 'synthetic:llama3-8b',
    description: 'Llama-3-8B shapes (4096 hidden, 32 layers, 32/8 heads of 128, 14336 FFN), bf16, weights generated on the backend',
    config: LlamaConfigSchema.parse({
      vocab_size: LLAMA3_VOCAB,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 128,
      rms_norm_eps: 1e-5,
      rope_theta: 500000,
      rope_scaling: LLAMA3_ROPE_SCALING,
      max_position_embeddings: 8192,
      tie_word_embeddings: false,
    }),
    weightDtype: 'bf16',
    seed: 0x67726574613862n,
  },
};

export const MODEL_NAMES = Object.keys(SYNTHETIC_MODELS);
