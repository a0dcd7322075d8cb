// Device helpers shared by the kernels: weight loads, the counter hash, and
// the wave and block reductions whose fixed butterfly order every kernel's
// reduction-order rule refers to.
//
// FP contraction is off in every build (-ffp-contract=off; nvcc --fmad=false),
// so a * b + c is a product and a sum, each rounded, on every vendor; every
// fused multiply-add a kernel relies on is written out (__fmaf_rn, __fma_rn).
// (HIP's __fmul_rn and __fadd_rn are plain * and +: only with contraction off
// does the compiler keep them apart.)
#pragma once

#include <cstdint>

#include "../native/bits.h"
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
__device__ __forceinline__ float to_f32(bf16 x) { return greta::bf16_to_f32(x.v); }
__device__ __forceinline__ float to_f32(f16 x) { return greta::f16_to_f32(x.v); }

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

// Multiprocessors (CUs) of the current device, for launch shapes that fill
// it; never changes what a kernel computes.
inline int multiprocessors() {
  int dev = 0, n = 0;
  if (hipGetDevice(&dev) != hipSuccess || hipDeviceGetAttribute(&n, hipDeviceAttributeMultiprocessorCount, dev) != hipSuccess)
    return 1;
  return n > 0 ? n : 1;
}

}  // namespace greta_hip

// Whether this build has the sm_90a kernels (GRETA_SM90A: CUDA_ARCHS holds
// 90a) and the current device runs them (compute capability 9.0). Host code;
// defined in hip/matmul.hip.
bool greta_sm90a();
