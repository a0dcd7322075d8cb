// cache[pos[m], :] = src[m, :] for up to GRETA_KV_WRITE_MAX (cache, src)
// pairs of the same rows in one launch (K and V). One thread per element.
#pragma once

#include "common.h"

constexpr int GRETA_KV_WRITE_MAX = 2;

struct GretaKvWrites {
  float* cache[GRETA_KV_WRITE_MAX];
  const float* src[GRETA_KV_WRITE_MAX];
  int64_t width[GRETA_KV_WRITE_MAX];
  int count;
};

hipError_t greta_kv_write(const GretaKvWrites& w, const int32_t* pos, int64_t M, hipStream_t stream);
