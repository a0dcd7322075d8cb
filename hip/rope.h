// In place, rotate-half (HF Llama): pairs (i, i + head_dim/2) of each head of
// row m rotate by pos[m] * inv_freq[i]. No reduction: one thread per pair.
// Up to GRETA_ROPE_MAX tensors of the same rows in one launch (Q and K), each
// computed exactly as alone.
//
// Then, in the same launch, the KV writes of hip/kv_write.h at their own
// positions (null: none): a write whose source is a rotated tensor (from[k],
// an index into the targets) takes the rotated values from the thread that
// makes them; the others are copied as kv_write copies them. The results are
// those of greta_rope followed by greta_kv_write, one kernel boundary fewer
// in the decode step.
#pragma once

#include "common.h"
#include "kv_write.h"

constexpr int GRETA_ROPE_MAX = 2;

struct GretaRopeTargets {
  float* x[GRETA_ROPE_MAX];
  int heads[GRETA_ROPE_MAX];
  int count;
};

struct GretaRopeWrites {
  GretaKvWrites w;
  int from[GRETA_KV_WRITE_MAX];  // the target whose rotated rows write k takes, or -1
  const int32_t* pos;            // device positions of the writes (null: no writes)
};

hipError_t greta_rope(const GretaRopeTargets& t, const int32_t* pos, const float* inv_freq, int64_t M, int head_dim,
                      const GretaRopeWrites& writes, hipStream_t stream);
