#include "matmul.h"

namespace {
using namespace greta_hip;

constexpr int WAVES = 4;  // waves per block, side by side in N
constexpr int COLS = 4;   // output columns per wave
constexpr int ROWS = 8;   // output rows per wave tile

// 8 consecutive elements as floats, with one 16-byte load (two for f32).
__device__ __forceinline__ void load8(const float* p, float (&o)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
  o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}

__device__ __forceinline__ void load8(const bf16* p, float (&o)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    o[2 * i] = __uint_as_float(w[i] << 16);
    o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ void load8(const f16* p, float (&o)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    o[2 * i] = to_f32(f16{static_cast<uint16_t>(w[i] & 0xffffu)});
    o[2 * i + 1] = to_f32(f16{static_cast<uint16_t>(w[i] >> 16)});
  }
}

// Blocks are numbered row tile fastest: the blocks that read one slice of
// weights run together, so for prefill the slice comes from HBM once and from
// L2 for the other row tiles.
template <typename W>
__global__ void matmul_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M,
                              int64_t N, int64_t K, int64_t row_tiles) {
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t block = blockIdx.x;
  const int64_t m0 = (block % row_tiles) * ROWS;
  const int64_t n0 = ((block / row_tiles) * WAVES + threadIdx.x / GRETA_WAVE_SIZE) * COLS;
  if (n0 >= N) return;  // whole waves leave; no block barrier follows
  const int cols = static_cast<int>(N - n0 < COLS ? N - n0 : COLS);
  const int rows = static_cast<int>(M - m0 < ROWS ? M - m0 : ROWS);
  float acc[ROWS][COLS];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int c = 0; c < COLS; c++) acc[r][c] = 0.f;

  if (K % 8 == 0) {
    for (int64_t k = static_cast<int64_t>(lane) * 8; k < K; k += 8 * GRETA_WAVE_SIZE) {
      float wv[COLS][8];
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        if (c < cols) {
          load8(w + (n0 + c) * K + k, wv[c]);
        } else {
#pragma unroll
          for (int j = 0; j < 8; j++) wv[c][j] = 0.f;
        }
      }
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        if (r < rows) {
          float xv[8];
          load8(x + (m0 + r) * K + k, xv);
#pragma unroll
          for (int c = 0; c < COLS; c++)
#pragma unroll
            for (int j = 0; j < 8; j++) acc[r][c] = __fmaf_rn(xv[j], wv[c][j], acc[r][c]);
        }
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += GRETA_WAVE_SIZE) {
      float wv[COLS];
#pragma unroll
      for (int c = 0; c < COLS; c++) wv[c] = c < cols ? to_f32(w[(n0 + c) * K + k]) : 0.f;
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        if (r < rows) {
          const float xv = x[(m0 + r) * K + k];
#pragma unroll
          for (int c = 0; c < COLS; c++) acc[r][c] = __fmaf_rn(xv, wv[c], acc[r][c]);
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < COLS; c++) {
    const int64_t n = n0 + c;
    int s = 0;
    while (s + 1 < out.count && n >= out.end[s]) s++;
    const int64_t begin = s ? out.end[s - 1] : 0;
    float* const col = out.ptr[s] + (n - begin);
    const int64_t ld = out.end[s] - begin;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      const float v = wave_sum(acc[r][c]);
      // Every lane holds every sum; spread the stores over the lanes.
      if (lane == (r * COLS + c) % GRETA_WAVE_SIZE && r < rows && c < cols) col[(m0 + r) * ld] = v;
    }
  }
}

template <typename W>
hipError_t launch(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K, hipStream_t stream) {
  const int64_t row_tiles = (M + ROWS - 1) / ROWS;
  const int64_t col_blocks = (N + WAVES * COLS - 1) / (WAVES * COLS);
  if (row_tiles * col_blocks > 0x7fffffff) return hipErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(row_tiles * col_blocks));
  dim3 block(WAVES * GRETA_WAVE_SIZE);
  hipLaunchKernelGGL(matmul_kernel<W>, grid, block, 0, stream, out, x, static_cast<const W*>(w), M, N, K, row_tiles);
  return hipGetLastError();
}
}  // namespace

hipError_t greta_matmul(const GretaMatmulOuts& out, const float* x, const void* w, int w_type, int64_t M, int64_t N,
                        int64_t K, hipStream_t stream) {
  if (out.count < 1 || out.count > GRETA_MATMUL_MAX_OUTS || out.end[out.count - 1] != N) return hipErrorInvalidValue;
  if (K % 8 == 0 && ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) & 15) != 0)
    return hipErrorInvalidValue;  // the vector path needs 16-byte alignment; never fall back silently
  switch (w_type) {
    case W_F32: return launch<float>(out, x, w, M, N, K, stream);
    case W_F16: return launch<f16>(out, x, w, M, N, K, stream);
    case W_BF16: return launch<bf16>(out, x, w, M, N, K, stream);
    default: return hipErrorInvalidValue;
  }
}
