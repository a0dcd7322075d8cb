// Causal attention for prefill and decode over the KV cache, with GQA: query
// row m, head h attends to cache rows 0..pos[m] of kv head h / (H / KVH).
//
// Reduction-order rule: keys go in chunks of KEY_CHUNK, chunk c being keys
// [c*KEY_CHUNK, (c+1)*KEY_CHUNK), and chunks in groups of CHUNKS_PER_GROUP,
// group g being chunks [g*CHUNKS_PER_GROUP, (g+1)*CHUNKS_PER_GROUP): fixed
// sizes, so chunks and groups depend on the key index alone. For each
// (row, head), chunk c gives a partial computed the same way wherever it runs:
//   score s_j = (q . k_j) * scale, the dot sequential in increasing d (fma);
//   m_c = max of the chunk's scores (exact, in any order);
//   e_j = exp(s_j - m_c);
//   l_c = sum of e_j sequential in increasing j;
//   acc_c[d] = sum of e_j * v_j[d] sequential in increasing j (fma).
// Merging partial (m_c, l_c, acc_c) into state (m, l, acc): m' = max(m, m_c),
// a = exp(m - m'), b = exp(m_c - m'), l = l*a + l_c*b, acc = acc*a + acc_c*b.
// A group's partial is its chunks' partials merged in chunk order, starting
// from the empty state (m = -inf, l = acc = 0); the result is the
// groups' partials merged the same way in group order, then acc / l. Every
// step uses explicitly rounded fp32 operations (no compiler contraction) and
// none depends on the wave size or the launch, so the layout is free:
// prefill (many rows) runs the chain in registers, one block per (row,
// KV head), or from TILE_POSITIONS rows at head_dim 128 one block per 16
// positions (8 on CDNA) of a KV head, sharing each K and V tile; a single
// decode row spreads its chunks over many blocks and merges them after (one
// short launch per merge level); the bits are the same.
//
// Which chain makes a chunk's partial is fixed per (shape, device), never
// per call: with head_dim 64 or 128 on a device with wgmma (sm_90a: H100,
// H200) the scores and p.V are hip/matmul.h's fp32-accurate chain on the
// matrix units (hip/attention_chain.hip states it; greta_attention_chain_runs
// says where), everywhere else the fp32 fma chain above. Prefill, decode and
// the probe of one shape on one device so always run the same one.
//
// For the planted faults only: custom_scale (when not null) replaces the
// model's 1/sqrt(head_dim), and key_chunk 16 or 32 another chunk size (0
// is KEY_CHUNK); a chunk size of a fault runs the fma chain's rows layout
// whatever the device, each its own instantiation. The model's own calls
// pass null and 0.
#pragma once

#include "common.h"

// The rule's fixed sizes: keys a chunk, chunks a group.
constexpr int GRETA_KEY_CHUNK = 64;
constexpr int GRETA_CHUNKS_PER_GROUP = 16;

// Bytes of `partials` greta_attention needs for M rows over at most max_keys keys.
// max_keys sizes the launch: at least every row's pos + 1, and may be more (a
// graph's launch covers the cache); each row reads its own key count from pos
// on the device, so the bits do not depend on it.
size_t greta_attention_scratch_bytes(int64_t M, int n_heads, int head_dim, int64_t max_keys);

hipError_t greta_attention(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                           int64_t M, int n_heads, int n_kv_heads, int head_dim, int64_t max_keys,
                           const float* custom_scale, int key_chunk, float* partials, hipStream_t stream);

// The rows layout (one block per row and KV head) whatever M and head_dim:
// the prefill tile kernel's reference, checked against it bit for bit in
// dev/attention.hip. The model's calls go through greta_attention.
hipError_t greta_attention_rows(float* out, const float* q, const float* k_cache, const float* v_cache,
                                const int32_t* pos, int64_t M, int n_heads, int n_kv_heads, int head_dim,
                                hipStream_t stream);

// The probe of one row at position pos (see Backend::attention_probe): scores
// and probs [n_heads, pos + 1], pv [n_heads * head_dim], with the order of
// greta_attention under the same custom_scale and key_chunk. `factors` is
// device scratch of greta_attention_probe_scratch_bytes.
size_t greta_attention_probe_scratch_bytes(int n_heads, int32_t pos, int key_chunk);

// The probe's rescale of chunk c's exp-scores, from one head's merge factors
// fa (nc chunks, ng groups: a_c at [c], b_c at [nc + c], A_g at [2 nc + g],
// B_g at [2 nc + ng + g]): the factors applied after the chunk, b_c, the
// later a of its group, B_g, every later A, multiplied in that order. A key's
// probability is exp(s - m_c) times this times 1/l.
__device__ __forceinline__ float greta_probe_factor(const float* fa, int64_t c, int64_t nc, int64_t ng) {
  const int64_t gi = c / GRETA_CHUNKS_PER_GROUP;
  const int64_t gend = (gi + 1) * GRETA_CHUNKS_PER_GROUP < nc ? (gi + 1) * GRETA_CHUNKS_PER_GROUP : nc;
  float f = fa[nc + c];
  for (int64_t later = c + 1; later < gend; later++) f = __fmul_rn(f, fa[later]);
  f = __fmul_rn(f, fa[2 * nc + ng + gi]);
  for (int64_t later = gi + 1; later < ng; later++) f = __fmul_rn(f, fa[2 * nc + later]);
  return f;
}
hipError_t greta_attention_probe(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                                 const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                                 const float* custom_scale, int key_chunk, float* factors, hipStream_t stream);
