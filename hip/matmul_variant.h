// out[m, n] = sum_k x[m, k] * w[n, k] with another accumulation than matmul's,
// for the precision faults planted in decode (src/faults.ts). Never on the
// model's own path.
//
// Reduction-order rule: one thread per output, k by k, p = x*w and s = acc + p
// each rounded to fp32 (explicit __fmul_rn/__fadd_rn, no fma), so the bits
// equal the CPU backend's. F16_ACCUMULATE (1) rounds acc to half after every
// term, k increasing; REVERSE_K (2) runs k from K-1 down to 0.
#pragma once

#include "common.h"

// w is row-major, or tiled (hip/mma.h) where `tiled`.
hipError_t greta_matmul_variant(float* out, const float* x, const void* w, int w_type, bool tiled, int64_t M, int64_t N,
                                int64_t K, int variant, hipStream_t stream);
