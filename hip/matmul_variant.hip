#include "matmul_variant.h"
#include "mma.h"

namespace {
using namespace greta_hip;

template <typename W, int VARIANT>
__global__ void matmul_variant_kernel(float* out, const float* x, const W* __restrict__ w, bool tiled,
                                      int64_t M, int64_t N, int64_t K) {
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= M * N) return;
  const int64_t m = i / N, n = i % N;
  const float* xm = x + m * K;
  auto wk = [&](int64_t k) { return to_f32(w[tiled ? greta_mma::tiled_index<W>(n, k, K) : n * K + k]); };
  float acc = 0.f;
  if (VARIANT == 2) {
    for (int64_t k = K - 1; k >= 0; k--) acc = __fadd_rn(acc, __fmul_rn(xm[k], wk(k)));
  } else {
    for (int64_t k = 0; k < K; k++)
      acc = greta::f16_to_f32(greta::f32_to_f16(__fadd_rn(acc, __fmul_rn(xm[k], wk(k)))));
  }
  out[i] = acc;
}

template <typename W>
hipError_t launch(float* out, const float* x, const void* w, bool tiled, int64_t M, int64_t N, int64_t K, int variant,
                  hipStream_t stream) {
  const W* wt = static_cast<const W*>(w);
  const unsigned grid = elementwise_blocks(M * N);
  if (variant == 1)
    GRETA_LAUNCH((matmul_variant_kernel<W, 1>), dim3(grid), dim3(ELEMENTWISE_BLOCK), 0, stream, out, x, wt, tiled, M, N, K);
  else if (variant == 2)
    GRETA_LAUNCH((matmul_variant_kernel<W, 2>), dim3(grid), dim3(ELEMENTWISE_BLOCK), 0, stream, out, x, wt, tiled, M, N, K);
  else
    return hipErrorInvalidValue;
  return hipGetLastError();
}
}  // namespace

hipError_t greta_matmul_variant(float* out, const float* x, const void* w, int w_type, bool tiled, int64_t M, int64_t N,
                                int64_t K, int variant, hipStream_t stream) {
  switch (w_type) {
    case W_F32: return launch<float>(out, x, w, tiled, M, N, K, variant, stream);
    case W_F16: return launch<f16>(out, x, w, tiled, M, N, K, variant, stream);
    case W_BF16: return launch<bf16>(out, x, w, tiled, M, N, K, variant, stream);
    default: return hipErrorInvalidValue;
  }
}
