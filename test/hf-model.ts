// An HF Llama directory written from a synthetic model: config.json, safetensors (bf16, as the
// synthetic weights are) and Llama 3's tokenizer.json with its chat template. Shared by the
// model-file tests and the tests of other engines' traces of the same directory.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import llama3Tokenizer from 'llama3-tokenizer-js';
import type { LlamaConfig } from '../src/model/config.js';
import type { SyntheticModelSpec } from '../src/model/models.js';
import { syntheticWeights } from '../src/model/weights.js';
import { createBackend, type Tensor } from '../src/native.js';
import { writeSafetensors, writeShardedSafetensors } from './loaders/writers.js';

export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/** Llama 3's tokenizer.json, rebuilt from the vocabulary and merges the bundled tokenizer ships. */
export function writeLlama3Tokenizer(dir: string): void {
  const t = llama3Tokenizer as unknown as { vocabById: string[]; merges: Map<string, number> };
  const vocab: Record<string, number> = {};
  for (let i = 0; i < 128000; i++) vocab[t.vocabById[i]!] = i;
  const merges = [...t.merges.entries()].sort((a, b) => a[1] - b[1]).map(([m]) => m);
  const added = [];
  for (let i = 128000; i < 128256; i++) {
    added.push({ id: i, content: t.vocabById[i]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex:
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
          },
          behavior: 'Isolated',
          invert: false,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab,
      merges,
    },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>', chat_template: LLAMA3_CHAT_TEMPLATE }),
  );
}

export interface NamedTensor {
  key: string; // hf name
  gguf: string;
  shape: number[];
  bits: Uint16Array; // bf16
}

/** The synthetic model's weights as bf16 bits, by HF and GGUF name. */
export function exportWeights(spec: SyntheticModelSpec): NamedTensor[] {
  const b = createBackend('cpu');
  const w = syntheticWeights(b, spec.config, spec.weightDtype, spec.seed);
  const out: NamedTensor[] = [];
  const add = (key: string, gguf: string, t: Tensor) => out.push({ key, gguf, shape: t.shape, bits: b.download(t) as Uint16Array });
  add('model.embed_tokens.weight', 'token_embd.weight', w.embed);
  w.layers.forEach((l, i) => {
    const p = `model.layers.${i}.`;
    const g = `blk.${i}.`;
    add(p + 'input_layernorm.weight', g + 'attn_norm.weight', l.attnNorm);
    add(p + 'self_attn.q_proj.weight', g + 'attn_q.weight', l.wq);
    add(p + 'self_attn.k_proj.weight', g + 'attn_k.weight', l.wk);
    add(p + 'self_attn.v_proj.weight', g + 'attn_v.weight', l.wv);
    add(p + 'self_attn.o_proj.weight', g + 'attn_output.weight', l.wo);
    add(p + 'post_attention_layernorm.weight', g + 'ffn_norm.weight', l.ffnNorm);
    add(p + 'mlp.gate_proj.weight', g + 'ffn_gate.weight', l.wGate);
    add(p + 'mlp.up_proj.weight', g + 'ffn_up.weight', l.wUp);
    add(p + 'mlp.down_proj.weight', g + 'ffn_down.weight', l.wDown);
  });
  add('model.norm.weight', 'output_norm.weight', w.finalNorm);
  add('lm_head.weight', 'output.weight', w.lmHead);
  return out;
}

export function hfConfigJson(c: LlamaConfig): object {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: c.rope_scaling ? { ...c.rope_scaling } : null,
    max_position_embeddings: c.max_position_embeddings,
    tie_word_embeddings: c.tie_word_embeddings,
    torch_dtype: 'bfloat16',
  };
}

export const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
export const bf16ToF32 = (bits: Uint16Array) => new Float32Array(Uint32Array.from(bits, (h) => h << 16).buffer);

export function writeHfDir(dir: string, spec: SyntheticModelSpec, tensors: NamedTensor[], shards: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfigJson(spec.config)));
  writeLlama3Tokenizer(dir);
  const st = tensors.map((t) => ({ name: t.key, dtype: 'BF16', shape: t.shape, data: bytesOf(t.bits) }));
  if (shards === 1) writeSafetensors(join(dir, 'model.safetensors'), st, { format: 'pt' });
  else writeShardedSafetensors(dir, st, shards);
}
