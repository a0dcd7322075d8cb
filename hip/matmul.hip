#include "matmul.h"

namespace {
using namespace greta_hip;

constexpr int WAVES = 4;  // output columns per block
constexpr int ROWS = 4;   // rows of x per wave pass

template <typename W>
__global__ void matmul_kernel(float* __restrict__ out, const float* __restrict__ x, const W* __restrict__ w, int64_t M,
                              int64_t N, int64_t K) {
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * WAVES + threadIdx.x / GRETA_WAVE_SIZE;
  if (n >= N) return;  // whole waves leave; no block barrier follows
  const W* wn = w + n * K;
  for (int64_t m0 = static_cast<int64_t>(blockIdx.y) * ROWS; m0 < M; m0 += static_cast<int64_t>(gridDim.y) * ROWS) {
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[r] = 0.f;
    const int rows = static_cast<int>(M - m0 < ROWS ? M - m0 : ROWS);
    if (K % 8 == 0) {
      for (int64_t k = static_cast<int64_t>(lane) * 8; k < K; k += 8 * GRETA_WAVE_SIZE) {
        float wv[8];
#pragma unroll
        for (int j = 0; j < 8; j++) wv[j] = to_f32(wn[k + j]);
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
          if (r < rows) {
            const float* xr = x + (m0 + r) * K + k;
#pragma unroll
            for (int j = 0; j < 8; j++) acc[r] += xr[j] * wv[j];
          }
        }
      }
    } else {
      for (int64_t k = lane; k < K; k += GRETA_WAVE_SIZE) {
        const float wv = to_f32(wn[k]);
#pragma unroll
        for (int r = 0; r < ROWS; r++)
          if (r < rows) acc[r] += x[(m0 + r) * K + k] * wv;
      }
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[r] = wave_sum(acc[r]);
    if (lane == 0)
      for (int r = 0; r < rows; r++) out[(m0 + r) * N + n] = acc[r];
  }
}

template <typename W>
hipError_t launch(float* out, const float* x, const void* w, int64_t M, int64_t N, int64_t K, hipStream_t stream) {
  const int64_t row_tiles = (M + ROWS - 1) / ROWS;
  dim3 grid(static_cast<unsigned>((N + WAVES - 1) / WAVES), static_cast<unsigned>(row_tiles < 65535 ? row_tiles : 65535));
  dim3 block(WAVES * GRETA_WAVE_SIZE);
  hipLaunchKernelGGL(matmul_kernel<W>, grid, block, 0, stream, out, x, static_cast<const W*>(w), M, N, K);
  return hipGetLastError();
}
}  // namespace

hipError_t greta_matmul(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t N, int64_t K,
                        hipStream_t stream) {
  switch (w_type) {
    case W_F32: return launch<float>(out, x, w, M, N, K, stream);
    case W_F16: return launch<f16>(out, x, w, M, N, K, stream);
    case W_BF16: return launch<bf16>(out, x, w, M, N, K, stream);
    default: return hipErrorInvalidValue;
  }
}
