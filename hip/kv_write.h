// cache[pos[m], :] = src[m, :]. One thread per element.
#pragma once

#include "common.h"

hipError_t greta_kv_write(float* cache, const float* src, const int32_t* pos, int64_t M, int64_t D, hipStream_t stream);
