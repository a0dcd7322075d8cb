#include "silu_mul.h"

namespace {
using namespace greta_hip;

__global__ void silu_mul_kernel(float* out, const float* gate, const float* up, int64_t n) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.f + expf(-g)) * up[i];
}
}  // namespace

hipError_t greta_silu_mul(float* out, const float* gate, const float* up, int64_t n, hipStream_t stream) {
  GRETA_LAUNCH(silu_mul_kernel, dim3(elementwise_blocks(n)), dim3(ELEMENTWISE_BLOCK), 0, stream, out, gate, up, n);
  return hipGetLastError();
}
