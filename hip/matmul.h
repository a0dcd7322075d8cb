// out[m, n] = sum_k x[m, k] * w[n, k]: every projection, lm_head included,
// for decode (M = 1) and prefill (M = N tokens) alike.
//
// Reduction-order rule: the W lanes of one wave split K into groups of 8
// consecutive elements; lane l owns groups g with g mod W == l and adds them
// in increasing g, each group's 8 products in increasing k, each one fma
// (__fmaf_rn) into one fp32 accumulator per output; the W lane sums are then
// combined by the wave_sum butterfly. (When K % 8 != 0, groups are single elements: a choice made by K
// alone.) A wave computes a ROWS x COLS tile of outputs only to share loads:
// every output has its own accumulator and the same chain of operations in
// any tile, so M never changes a bit of any output.
#pragma once

#include "common.h"

// Where the N output columns go: up to GRETA_MATMUL_MAX_OUTS row-major
// outputs side by side, out s taking columns [end[s-1], end[s]) as its own
// [M, end[s] - end[s-1]]. A fused projection (Q, K and V from one weight of
// their rows stacked) writes its three outputs in one launch; where a column
// is stored never changes how it is computed.
constexpr int GRETA_MATMUL_MAX_OUTS = 3;
struct GretaMatmulOuts {
  float* ptr[GRETA_MATMUL_MAX_OUTS];
  int64_t end[GRETA_MATMUL_MAX_OUTS];
  int count;
};

// x and w must be 16-byte aligned (device allocations and row views of them
// are, since row strides are multiples of 8 elements when K % 8 == 0).
hipError_t greta_matmul(const GretaMatmulOuts& out, const float* x, const void* w, int w_type, int64_t M, int64_t N,
                        int64_t K, hipStream_t stream);
