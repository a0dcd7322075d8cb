// Attention on the matrix units: the chain of hip/attention.h's rule with
// each chunk's partial made by hip/matmul.h's fp32-accurate chain. Called by
// hip/attention.hip (greta_attention, greta_attention_probe) for the shapes
// and devices greta_attention_chain_runs accepts; not a public API.
#pragma once

#include "attention.h"

// Whether the matrix chain runs attention of this shape on the current
// device: every call of one shape on one device takes the same chain
// (prefill, decode and the probe), so E1 stays exact either way.
bool greta_attention_chain_runs(int n_heads, int n_kv_heads, int head_dim);

// key_chunk: hip/attention.h's (0 or 64 the model's; 32 and 16 the planted
// faults', which run the rows layout for every M). Decode (M = 1) needs n_heads * (chunks + groups) * (head_dim + 2) floats of
// `partials` for max_keys: greta_attention_scratch_bytes.
hipError_t greta_attention_chain(float* out, const float* q, const float* k_cache, const float* v_cache,
                                 const int32_t* pos, int64_t M, int n_heads, int n_kv_heads, int head_dim,
                                 int64_t max_keys, float scale, int key_chunk, float* partials, hipStream_t stream);

// The probe of one row (see greta_attention_probe) on the same chain.
hipError_t greta_attention_chain_probe(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                                       const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                                       float scale, int key_chunk, float* factors, hipStream_t stream);
