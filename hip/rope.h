// In place, rotate-half (HF Llama): pairs (i, i + head_dim/2) of each head of
// row m rotate by pos[m] * inv_freq[i]. No reduction: one thread per pair.
#pragma once

#include "common.h"

hipError_t greta_rope(float* x, const int32_t* pos, const float* inv_freq, int64_t M, int n_heads, int head_dim,
                      hipStream_t stream);
