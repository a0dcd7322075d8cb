#include "rmsnorm.h"

namespace {
using namespace greta_hip;

constexpr int BLOCK = 256;

template <typename W>
__global__ void rmsnorm_kernel(float* __restrict__ out, const float* __restrict__ x, const W* __restrict__ w, int64_t D,
                               float eps) {
  __shared__ float wave_sums[BLOCK / GRETA_WAVE_SIZE];
  __shared__ float inv_rms;
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * D;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += BLOCK) ss = __fmaf_rn(xr[i], xr[i], ss);
  ss = wave_sum(ss);
  const int wave = threadIdx.x / GRETA_WAVE_SIZE;
  if (threadIdx.x % GRETA_WAVE_SIZE == 0) wave_sums[wave] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    for (int i = 0; i < BLOCK / GRETA_WAVE_SIZE; i++) total += wave_sums[i];
    inv_rms = 1.f / sqrtf(total / static_cast<float>(D) + eps);
  }
  __syncthreads();
  float* o = out + static_cast<int64_t>(blockIdx.x) * D;
  for (int64_t i = threadIdx.x; i < D; i += BLOCK) o[i] = xr[i] * inv_rms * to_f32(w[i]);
}

template <typename W>
hipError_t launch(float* out, const float* x, const void* w, int64_t M, int64_t D, float eps, hipStream_t stream) {
  hipLaunchKernelGGL(rmsnorm_kernel<W>, dim3(static_cast<unsigned>(M)), dim3(BLOCK), 0, stream, out, x,
                     static_cast<const W*>(w), D, eps);
  return hipGetLastError();
}
}  // namespace

hipError_t greta_rmsnorm(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t D, float eps,
                         hipStream_t stream) {
  switch (w_type) {
    case W_F32: return launch<float>(out, x, w, M, D, eps, stream);
    case W_F16: return launch<f16>(out, x, w, M, D, eps, stream);
    case W_BF16: return launch<bf16>(out, x, w, M, D, eps, stream);
    default: return hipErrorInvalidValue;
  }
}
