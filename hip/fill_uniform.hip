#include "fill_uniform.h"

namespace {
using namespace greta_hip;

__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a < 0x38800000u) {
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) r++;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = a - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

__global__ void fill_uniform_kernel(void* t, int dtype, int64_t n, uint64_t seed, double scale, double offset) {
  const int64_t i = global_id();
  if (i >= n) return;
  const uint64_t r = mix64(seed ^ mix64(static_cast<uint64_t>(i)));
  const double u = static_cast<double>(r >> 40) * (1.0 / 8388608.0) - 1.0;  // exact
  // Separate roundings (no FMA), as on the host, so both backends store the same bits.
  const double v = __dadd_rn(offset, __dmul_rn(scale, u));
  switch (dtype) {
    case 0: static_cast<float*>(t)[i] = static_cast<float>(v); break;
    case 2: static_cast<uint16_t*>(t)[i] = f32_to_f16_bits(static_cast<float>(v)); break;
    case 3: static_cast<uint16_t*>(t)[i] = f32_to_bf16_bits(static_cast<float>(v)); break;
    default: static_cast<int32_t*>(t)[i] = static_cast<int32_t>(v); break;
  }
}
}  // namespace

hipError_t greta_fill_uniform(void* t, int dtype, int64_t n, uint64_t seed, double scale, double offset,
                              hipStream_t stream) {
  hipLaunchKernelGGL(fill_uniform_kernel, dim3(elementwise_blocks(n)), dim3(ELEMENTWISE_BLOCK), 0, stream, t, dtype, n, seed, scale,
                     offset);
  return hipGetLastError();
}
