// out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w
//
// Reduction-order rule: one block of BLOCK threads per row, whatever M is.
// Thread t sums x[i]^2 for i = t, t + BLOCK, ... in increasing i, one fma
// each; each wave combines its lanes with the wave_sum butterfly; wave 0 then
// adds the wave sums in wave order. The order depends on the row length alone.
#pragma once

#include "common.h"

hipError_t greta_rmsnorm(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t D, float eps,
                         hipStream_t stream);

// sum = a + b, then out = rmsnorm(sum): the residual add fused with the norm
// that follows it, in the same order (each thread adds the elements it then
// squares), so the bits equal greta_add then greta_rmsnorm.
hipError_t greta_add_rmsnorm(float* sum, float* out, const float* a, const float* b, const void* w, int w_type, int64_t M,
                             int64_t D, float eps, hipStream_t stream);
