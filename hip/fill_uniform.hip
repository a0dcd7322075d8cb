#include "fill_uniform.h"

namespace {
using namespace greta_hip;

__global__ void fill_uniform_kernel(void* t, int dtype, int64_t n, uint64_t seed, double scale, double offset) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= n) return;
  const double u = greta::uniform_pm1(seed, static_cast<uint64_t>(i));  // exact
  // Separate roundings (no FMA), as on the host, so both backends store the same bits.
  const double v = __dadd_rn(offset, __dmul_rn(scale, u));
  switch (dtype) {
    case 0: static_cast<float*>(t)[i] = static_cast<float>(v); break;
    case 2: static_cast<uint16_t*>(t)[i] = greta::f32_to_f16(static_cast<float>(v)); break;
    case 3: static_cast<uint16_t*>(t)[i] = greta::f32_to_bf16(static_cast<float>(v)); break;
    default: static_cast<int32_t*>(t)[i] = static_cast<int32_t>(v); break;
  }
}
}  // namespace

hipError_t greta_fill_uniform(void* t, int dtype, int64_t n, uint64_t seed, double scale, double offset,
                              hipStream_t stream) {
  GRETA_LAUNCH(fill_uniform_kernel, dim3(elementwise_blocks(n)), dim3(ELEMENTWISE_BLOCK), 0, stream, t, dtype, n, seed, scale,
               offset);
  return hipGetLastError();
}
