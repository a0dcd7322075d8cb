// out[m, :] = table[ids[m], :]. No reduction: one thread per output element.
#pragma once

#include "common.h"

hipError_t greta_embedding(float* out, const void* table, int w_type, const int32_t* ids, int64_t M, int64_t D,
                           hipStream_t stream);
