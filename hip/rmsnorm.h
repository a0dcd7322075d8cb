// out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w
//
// Reduction-order rule: one block of NORM_THREADS threads per row, whatever M
// is. Thread t sums x[i]^2 for i = t, t + NORM_THREADS, ... in increasing i,
// one fma each; each wave combines its lanes with the wave_sum butterfly;
// thread 0 then adds the wave sums in wave order, and out[i] = x[i] * inv * w[i]
// with inv = 1 / sqrt(total / D + eps). The order depends on the row length
// alone. A projection that norms its own input (greta_matmul with a
// GretaNormFirst) sums by the same rule with norm_row below, whatever its
// block's thread count.
#pragma once

#include "common.h"

hipError_t greta_rmsnorm(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t D, float eps,
                         hipStream_t stream);

// sum = a + b, then out = rmsnorm(sum): the residual add fused with the norm
// that follows it, in the same order (each thread adds the elements it then
// squares), so the bits equal greta_add then greta_rmsnorm.
hipError_t greta_add_rmsnorm(float* sum, float* out, const float* a, const float* b, const void* w, int w_type, int64_t M,
                             int64_t D, float eps, hipStream_t stream);

namespace greta_hip {

constexpr int NORM_THREADS = 256;
constexpr int NORM_WAVES = NORM_THREADS / GRETA_WAVE_SIZE;

// 1 / rms from the wave sums of one row, added in wave order.
__device__ __forceinline__ float norm_inv_rms(const float* wave_sums, int64_t D, float eps) {
  float total = 0.f;
  for (int i = 0; i < NORM_WAVES; i++) total += wave_sums[i];
  return 1.f / sqrtf(total / static_cast<float>(D) + eps);
}

// A block of THREADS threads (any multiple of the wave) makes one row of D
// floats (D % 4 == 0): row = a (+ b, element by element, when b is given) in
// shared memory, stored to sum too when sum is given; returns 1 / rms of the
// row summed by the rule above. Each thread stands in for the rule's threads
// t, t + THREADS, ... below NORM_THREADS, and a wave of them is a wave of the
// rule's, lane for lane, so every fma and butterfly step is the rmsnorm
// kernel's. red: NORM_WAVES + 1 floats of shared memory.
template <int THREADS>
__device__ float norm_row(float* row, float* red, const float* a, const float* b, float* sum, int64_t D, float eps) {
  static_assert(THREADS % GRETA_WAVE_SIZE == 0, "norm_row: whole waves");
  for (int64_t i = 4 * static_cast<int64_t>(threadIdx.x); i < D; i += 4 * THREADS) {
    float4 v = greta_load(reinterpret_cast<const float4*>(a + i));
    if (b) {
      const float4 u = greta_load(reinterpret_cast<const float4*>(b + i));
      v.x = __fadd_rn(v.x, u.x);
      v.y = __fadd_rn(v.y, u.y);
      v.z = __fadd_rn(v.z, u.z);
      v.w = __fadd_rn(v.w, u.w);
    }
    *reinterpret_cast<float4*>(row + i) = v;
    if (sum) *reinterpret_cast<float4*>(sum + i) = v;
  }
  __syncthreads();
  // Wave-uniform: THREADS and NORM_THREADS are whole waves.
  for (int t = static_cast<int>(threadIdx.x); t < NORM_THREADS; t += THREADS) {
    float ss = 0.f;
    for (int64_t i = t; i < D; i += NORM_THREADS) ss = __fmaf_rn(row[i], row[i], ss);
    ss = wave_sum(ss);
    if (t % GRETA_WAVE_SIZE == 0) red[t / GRETA_WAVE_SIZE] = ss;
  }
  __syncthreads();
  if (threadIdx.x == 0) red[NORM_WAVES] = norm_inv_rms(red, D, eps);
  __syncthreads();
  return red[NORM_WAVES];
}

}  // namespace greta_hip
