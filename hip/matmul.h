// out[m, n] = sum_k x[m, k] * w[n, k]: every projection, lm_head included,
// for decode (M = 1) and prefill (M = N tokens) alike.
//
// Reduction-order rule (the chain of every output, whatever M): K is cut into
// blocks of 32 (hip/mma.h's KBLOCK; the last one padded with zeros). For block
// s the matrix unit forms c_s, starting from zero: x is split exactly into
// bf16 terms x = hi + mid + lo, the weight likewise (bf16: itself; f16:
// hi + lo; f32: hi + mid + lo), and the products of terms i, j with i + j <= 2
// are accumulated smallest first, each term pair as the two instructions of
// mma_k32 in hip/mma.h, in which the k of a block meet in a way fixed by the
// position in the block. Then out = ((0 + c_0) + c_1) + ... + c_{S-1} in fp32,
// s increasing. Prefill keeps that sum in registers (its activation terms
// split once per call, by the same function; on sm_90a, H100 and H200, each
// k16 instruction of the chain is a wgmma, which gives mma.sync's bits for
// every output: dev/wgmma_bits.cu, dev/matmul.hip), and so does decode of wide
// outputs (the gemv kernel: one warp over all of K for its rows); other
// small M (up to 4 tiles of tokens) has the warps of a block take turns over
// the blocks and one thread per output add the c_s in the same order. A token pads into a
// tile of 8 (NVIDIA) or 16 (AMD) tokens, and an instruction's result for one
// token never depends on the others, so M never changes a bit of any output.
// K % 8 != 0 (the 16-byte lane loads need it) runs the CUDA-core chain
// instead, for every M: the W lanes of one wave take single elements k with
// k mod W == lane, one fma each into one fp32 accumulator, k increasing, then
// the wave_sum butterfly.
//
// Error bound (relative to sum_k |x_k w_k|, u = 2^-24). The splits are exact
// (barring underflow: terms below 2^-126) and bf16 x bf16 products are exact
// in fp32. Dropped products (i + j >= 3, f16/f32 weights only): each term
// below 2^-9 of the one before, so <= 3 * 2^-27 relative. One instruction,
// rounding measured on NVIDIA tensor cores as alignment to the largest
// addend and truncation to fp32: <= 17 * 2u * max addend, and c_s's six
// instructions (the hi ones dominate) <= 2 * 17 * 2u ~ 4e-6 of block s's
// sum |x w|. The fp32 sum of S = K/32 block results: <= (S - 1) u. So
// |error| <= (68 u + (K/32) u) sum_k |x_k w_k| (4e-6 + 7.6e-6 at K = 4096).
// Random signs make both a random walk: measured relative L2 against fp64
// 2.1e-7 at K = 4096 and 3.9e-7 at K = 14336, as the CUDA-core kernel's
// (dev/matmul.hip; test/gpu/ops.gpu.test.ts bounds it by 2e-6).
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

// Device scratch a call of M tokens of K inputs needs (0 for most: decode,
// and K % 8 != 0): prefill splits the activations there once per call, into
// their three bf16 terms (3 M K bf16). The caller owns it and keeps it for
// later calls; the call only writes it, in stream order.
size_t greta_matmul_scratch_bytes(int64_t M, int64_t K);

// The weight's layout: when K % 8 == 0 (the matrix units), tiled (hip/mma.h:
// tiles of 16 rows x 32 k, each lane's operands in 16-byte units side by
// side), which greta_matmul_weight_bytes sizes; otherwise row-major. A row
// view of a tiled weight starts greta_matmul_tile_offset(row0, K) elements
// in, for row0 a multiple of 16.
constexpr int64_t GRETA_TILE_ROWS = 16;
constexpr int64_t GRETA_TILE_K = 2 * 16;  // two instructions of 16 k (hip/mma.h's KBLOCK)
inline bool greta_matmul_tiled(int64_t K) { return K % 8 == 0; }
inline size_t greta_matmul_weight_bytes(int64_t N, int64_t K, size_t elem) {
  if (!greta_matmul_tiled(K)) return static_cast<size_t>(N * K) * elem;
  return static_cast<size_t>((N + GRETA_TILE_ROWS - 1) / GRETA_TILE_ROWS * GRETA_TILE_ROWS *
                             ((K + GRETA_TILE_K - 1) / GRETA_TILE_K * GRETA_TILE_K)) * elem;
}
inline int64_t greta_matmul_tile_offset(int64_t row0, int64_t K) {
  return row0 * ((K + GRETA_TILE_K - 1) / GRETA_TILE_K * GRETA_TILE_K);
}

// When K % 8 == 0, x, w and scratch must be 16-byte aligned (device
// allocations and row views of them are, since row strides are multiples of
// 8 elements, and tiles are 1 KB or more); scratch_bytes >=
// greta_matmul_scratch_bytes(M, K).
hipError_t greta_matmul(const GretaMatmulOuts& out, const float* x, const void* w, int w_type, int64_t M, int64_t N,
                        int64_t K, void* scratch, size_t scratch_bytes, hipStream_t stream);
