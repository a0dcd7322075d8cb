// Device helpers shared by the kernels: weight loads, the counter hash, and
// the wave and block reductions whose fixed butterfly order every kernel's
// reduction-order rule refers to.
#pragma once

#include <cstdint>

#include "compat.h"

namespace greta_hip {

// Weight dtypes as in native/tensor.h.
enum WeightType : int { W_F32 = 0, W_F16 = 2, W_BF16 = 3 };

struct bf16 {
  uint16_t v;
};
struct f16 {
  uint16_t v;
};

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __uint_as_float(static_cast<uint32_t>(x.v) << 16); }
__device__ __forceinline__ float to_f32(f16 x) {
  // IEEE half -> float, exact, without vendor half types.
  uint32_t sign = (x.v & 0x8000u) << 16;
  uint32_t exp = (x.v >> 10) & 0x1fu;
  uint32_t man = x.v & 0x3ffu;
  if (exp == 0) {
    float f = static_cast<float>(man) * 5.9604644775390625e-8f;  // man * 2^-24, exact
    return sign ? -f : f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp + 112u) << 23) | (man << 13));
  return __uint_as_float(u);
}

__host__ __device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Butterfly over the wave: lane i adds lane i^1, then i^2, ... i^(W/2). The
// same order on every call; the result is identical in every lane.
__device__ __forceinline__ float wave_sum(float v) {
#pragma unroll
  for (int mask = 1; mask < GRETA_WAVE_SIZE; mask <<= 1) v += GRETA_SHFL_XOR(v, mask);
  return v;
}

__device__ __forceinline__ float wave_max(float v) {
#pragma unroll
  for (int mask = 1; mask < GRETA_WAVE_SIZE; mask <<= 1) v = fmaxf(v, GRETA_SHFL_XOR(v, mask));
  return v;
}

// Launch shape of the one-thread-per-element ops.
constexpr int ELEMENTWISE_BLOCK = 256;
inline unsigned elementwise_blocks(int64_t n) {
  return static_cast<unsigned>((n + ELEMENTWISE_BLOCK - 1) / ELEMENTWISE_BLOCK);
}
__device__ __forceinline__ int64_t global_id() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

}  // namespace greta_hip
