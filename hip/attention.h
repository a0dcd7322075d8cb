// Causal attention for prefill and decode over the KV cache, with GQA: query
// row m, head h attends to cache rows 0..pos[m] of kv head h / (H / KVH).
//
// Reduction-order rule: keys go in chunks of KEY_CHUNK, chunk c being keys
// [c*KEY_CHUNK, (c+1)*KEY_CHUNK): a fixed split size, so the chunks depend on
// the key index alone. Each chunk gives a partial (its max m_c, its exp-sum
// l_c and its p.V) computed the same way wherever it runs: whole q.k dot
// products per lane in increasing d, max and sum by the wave butterfly, p.V
// per lane in increasing key order. Partials are then merged in chunk order
// with the running-max rescale. Every step uses explicitly rounded fp32
// operations (no compiler contraction), so the split layout is free:
// prefill (many rows) merges in the same wave that made the partials, and a
// single decode row spreads its chunks over many waves and merges them after;
// the bits are the same.
//
// For the planted faults only: custom_scale (when not null) replaces the
// model's 1/sqrt(head_dim), and key_chunk 16 or 32 another split (0 is
// KEY_CHUNK). The model's own calls pass null and 0.
#pragma once

#include "common.h"

// Bytes of `partials` greta_attention needs for M rows over at most max_keys keys.
size_t greta_attention_scratch_bytes(int64_t M, int n_heads, int head_dim, int64_t max_keys);

hipError_t greta_attention(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                           int64_t M, int n_heads, int n_kv_heads, int head_dim, int64_t max_keys,
                           const float* custom_scale, int key_chunk, float* partials, hipStream_t stream);

// The probe of one row at position pos (see Backend::attention_probe): scores
// and probs [n_heads, pos + 1], pv [n_heads * head_dim], with the order of
// greta_attention under the same custom_scale and key_chunk. `factors` is
// device scratch of greta_attention_probe_scratch_bytes.
size_t greta_attention_probe_scratch_bytes(int n_heads, int32_t pos, int key_chunk);
hipError_t greta_attention_probe(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                                 const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                                 const float* custom_scale, int key_chunk, float* factors, hipStream_t stream);
