// out[m, n] = sum_k x[m, k] * w[n, k]: every projection, lm_head included.
//
// Reduction-order rule: one wave computes out[m, n] for every m. Lane l owns
// the K elements k with (k / 8) mod W == l, in increasing k, in one fp32
// accumulator per row (8 consecutive elements per step when K % 8 == 0, one
// otherwise: a choice made by K alone); the W lane sums are then combined by
// the wave_sum butterfly. Rows are tiled ROWS at a time only to reuse the
// weight registers: a row's arithmetic is the same in any tile, so M (decode's
// 1 or prefill's N) never changes a bit of any output.
#pragma once

#include "common.h"

hipError_t greta_matmul(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t N, int64_t K,
                        hipStream_t stream);
