// Model weights on a backend, HF layout: every projection is [out, in].
import type { Backend, Tensor, WeightDType } from '../native.js';
import type { LlamaConfig } from './config.js';

/**
 * Projections that read the same input are stacked in one tensor (wqkv,
 * wGateUp) so one matmul computes them; the parts are row views of it.
 */
export interface LayerWeights {
  attnNorm: Tensor; // [hidden]
  wqkv: Tensor; // [(n_heads + 2 n_kv_heads) * head_dim, hidden]: wq, wk, wv
  wq: Tensor; // [n_heads * head_dim, hidden]
  wk: Tensor; // [n_kv_heads * head_dim, hidden]
  wv: Tensor; // [n_kv_heads * head_dim, hidden]
  wo: Tensor; // [hidden, n_heads * head_dim]
  ffnNorm: Tensor; // [hidden]
  wGateUp: Tensor; // [2 intermediate, hidden]: wGate, wUp
  wGate: Tensor; // [intermediate, hidden]
  wUp: Tensor; // [intermediate, hidden]
  wDown: Tensor; // [hidden, intermediate]
}

export interface ModelWeights {
  embed: Tensor; // [vocab, hidden]
  layers: LayerWeights[];
  finalNorm: Tensor; // [hidden]
  lmHead: Tensor; // [vocab, hidden]; the embedding itself when tied
}

/** FNV-1a 64 of a tensor name, so each tensor's seed is stable and distinct. */
function nameSeed(seed: bigint, name: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const c of Buffer.from(name, 'utf8')) {
    h ^= BigInt(c);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return (h ^ seed) & 0xffffffffffffffffn;
}

/**
 * Random weights with the statistics of a trained Llama: projections with
 * unit-variance outputs (uniform, std 1/sqrt(fan_in)), norm gains near 1.
 */
export function syntheticWeights(b: Backend, cfg: LlamaConfig, dtype: WeightDType, seed: bigint): ModelWeights {
  const make = (name: string, shape: number[], scale: number, offset = 0, matmul = false): Tensor => {
    const t = b.alloc(dtype, shape, { matmul });
    b.fillUniform(t, nameSeed(seed, name), scale, offset);
    return t;
  };
  const proj = (name: string, out: number, inp: number) => make(name, [out, inp], Math.sqrt(3 / inp), 0, true);
  const norm = (name: string) => make(name, [cfg.hidden_size], 0.1, 1);
  const q = cfg.num_attention_heads * cfg.head_dim;
  const kv = cfg.num_key_value_heads * cfg.head_dim;
  // Parts of a stacked projection: row views of one tensor, each filled as if alone.
  const stacked = (parts: [name: string, rows: number][], inp: number): Tensor[] => {
    const t = b.alloc(dtype, [parts.reduce((n, [, r]) => n + r, 0), inp], { matmul: true });
    let row = 0;
    const views = parts.map(([name, rows]) => {
      const v = t.rows(row, rows);
      b.fillUniform(v, nameSeed(seed, name), Math.sqrt(3 / inp), 0);
      row += rows;
      return v;
    });
    return [t, ...views];
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const [wqkv, wq, wk, wv] = stacked(
      [[p + 'self_attn.q_proj.weight', q], [p + 'self_attn.k_proj.weight', kv], [p + 'self_attn.v_proj.weight', kv]],
      cfg.hidden_size,
    ) as [Tensor, Tensor, Tensor, Tensor];
    const [wGateUp, wGate, wUp] = stacked(
      [[p + 'mlp.gate_proj.weight', cfg.intermediate_size], [p + 'mlp.up_proj.weight', cfg.intermediate_size]],
      cfg.hidden_size,
    ) as [Tensor, Tensor, Tensor];
    layers.push({
      attnNorm: norm(p + 'input_layernorm.weight'),
      wqkv,
      wq,
      wk,
      wv,
      wo: proj(p + 'self_attn.o_proj.weight', cfg.hidden_size, q),
      ffnNorm: norm(p + 'post_attention_layernorm.weight'),
      wGateUp,
      wGate,
      wUp,
      wDown: proj(p + 'mlp.down_proj.weight', cfg.hidden_size, cfg.intermediate_size),
    });
  }
  // Tied, the table is the classifier's weight too.
  const embed = make('model.embed_tokens.weight', [cfg.vocab_size, cfg.hidden_size], 1, 0, cfg.tie_word_embeddings);
  return {
    embed,
    layers,
    finalNorm: norm('model.norm.weight'),
    lmHead: cfg.tie_word_embeddings ? embed : proj('lm_head.weight', cfg.vocab_size, cfg.hidden_size),
  };
}
