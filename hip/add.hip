#include "add.h"

namespace {
using namespace greta_hip;

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= n) return;
  out[i] = a[i] + b[i];
}
}  // namespace

hipError_t greta_add(float* out, const float* a, const float* b, int64_t n, hipStream_t stream) {
  GRETA_LAUNCH(add_kernel, dim3(elementwise_blocks(n)), dim3(ELEMENTWISE_BLOCK), 0, stream, out, a, b, n);
  return hipGetLastError();
}
