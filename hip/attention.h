// Causal attention for prefill and decode over the KV cache, with GQA: query
// row m, head h attends to cache rows 0..pos[m] of kv head h / (H / KVH).
//
// Reduction-order rule: one wave per (m, h). Keys go in chunks of KEY_CHUNK
// (a fixed split size: chunk c is keys [c*KEY_CHUNK, (c+1)*KEY_CHUNK), so the
// chunking depends on the key index alone, never on the number of rows or
// keys). Within a chunk each lane computes whole q.k dot products in
// increasing d; the chunk max and exp-sum use the wave butterfly; each lane
// accumulates p_j * v_j for its output dims in increasing key order; chunks
// are merged in order with the usual running-max rescale. A prefill row at
// position p and a decode step at position p run identical arithmetic.
#pragma once

#include "common.h"

hipError_t greta_attention(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                           int64_t M, int n_heads, int n_kv_heads, int head_dim, hipStream_t stream);
