// RoPE inverse frequencies, with Llama 3's frequency-dependent scaling
// (as in transformers' _compute_llama3_parameters), computed once in double.
import type { LlamaConfig } from './config.js';

export function ropeInvFreq(cfg: LlamaConfig): Float64Array {
  const half = cfg.head_dim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.rope_theta, (2 * i) / cfg.head_dim);
  const s = cfg.rope_scaling;
  if (!s) return inv;
  const lowFreqWavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const highFreqWavelen = s.original_max_position_embeddings / s.high_freq_factor;
  for (let i = 0; i < half; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowFreqWavelen) {
      inv[i] = f / s.factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth =
        (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
    }
  }
  return inv;
}
