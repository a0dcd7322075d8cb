// In place, rotate-half (HF Llama): pairs (i, i + head_dim/2) of each head of
// row m rotate by pos[m] * inv_freq[i]. No reduction: one thread per pair.
// Up to GRETA_ROPE_MAX tensors of the same rows in one launch (Q and K), each
// computed exactly as alone.
#pragma once

#include "common.h"

constexpr int GRETA_ROPE_MAX = 2;

struct GretaRopeTargets {
  float* x[GRETA_ROPE_MAX];
  int heads[GRETA_ROPE_MAX];
  int count;
};

hipError_t greta_rope(const GretaRopeTargets& t, const int32_t* pos, const float* inv_freq, int64_t M, int head_dim,
                      hipStream_t stream);
