// Llama model configuration, with Hugging Face config.json field names so a
// real checkpoint's config parses with the same schema.
import { z } from 'zod';

export const RopeScalingSchema = z.object({
  rope_type: z.literal('llama3'),
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: z.number().int().positive(),
});

export const LlamaConfigSchema = z
  .object({
    vocab_size: z.number().int().positive(),
    hidden_size: z.number().int().positive(),
    intermediate_size: z.number().int().positive(),
    num_hidden_layers: z.number().int().positive(),
    num_attention_heads: z.number().int().positive(),
    num_key_value_heads: z.number().int().positive(),
    head_dim: z.number().int().positive(),
    rms_norm_eps: z.number().positive(),
    rope_theta: z.number().positive(),
    rope_scaling: RopeScalingSchema.nullable(),
    max_position_embeddings: z.number().int().positive(),
    tie_word_embeddings: z.boolean(),
  })
  .refine((c) => c.num_attention_heads % c.num_key_value_heads === 0, {
    message: 'num_attention_heads must be a multiple of num_key_value_heads',
  })
  .refine((c) => c.head_dim % 2 === 0, { message: 'head_dim must be even (RoPE rotates pairs)' });

export type LlamaConfig = z.infer<typeof LlamaConfigSchema>;

export const LLAMA3_ROPE_SCALING = {
  rope_type: 'llama3',
  factor: 8,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 8192,
} as const;
