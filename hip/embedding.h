// out[m, :] = table[ids[m], :]. No reduction: one thread per output element.
// A tiled table (a tied embedding, stored as the classifier's matmul weight:
// hip/mma.h) is read where each element lies.
#pragma once

#include "common.h"

hipError_t greta_embedding(float* out, const void* table, int w_type, bool tiled, const int32_t* ids, int64_t M,
                           int64_t D, hipStream_t stream);
