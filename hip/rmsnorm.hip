#include "rmsnorm.h"

namespace {
using namespace greta_hip;

constexpr int BLOCK = 256;

// ADD: x is first made as a + b (stored to sum), each thread adding exactly
// the elements it squares and later scales, so it reads back only its own writes.
template <typename W, bool ADD>
__global__ void rmsnorm_kernel(float* __restrict__ out, const float* __restrict__ x, const W* __restrict__ w, int64_t D,
                               float eps, float* __restrict__ sum, const float* __restrict__ b) {
  __shared__ float wave_sums[BLOCK / GRETA_WAVE_SIZE];
  __shared__ float inv_rms;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * D;
  const float* xr = (ADD ? sum : x) + row;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += BLOCK) {
    if (ADD) sum[row + i] = __fadd_rn(x[row + i], b[row + i]);
    ss = __fmaf_rn(xr[i], xr[i], ss);
  }
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

template <typename W, bool ADD>
hipError_t launch(float* out, const float* x, const void* w, int64_t M, int64_t D, float eps, float* sum, const float* b,
                  hipStream_t stream) {
  hipLaunchKernelGGL((rmsnorm_kernel<W, ADD>), dim3(static_cast<unsigned>(M)), dim3(BLOCK), 0, stream, out, x,
                     static_cast<const W*>(w), D, eps, sum, b);
  return hipGetLastError();
}

template <bool ADD>
hipError_t dispatch(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t D, float eps, float* sum,
                    const float* b, hipStream_t stream) {
  switch (w_type) {
    case W_F32: return launch<float, ADD>(out, x, w, M, D, eps, sum, b, stream);
    case W_F16: return launch<f16, ADD>(out, x, w, M, D, eps, sum, b, stream);
    case W_BF16: return launch<bf16, ADD>(out, x, w, M, D, eps, sum, b, stream);
    default: return hipErrorInvalidValue;
  }
}
}  // namespace

hipError_t greta_rmsnorm(float* out, const float* x, const void* w, int w_type, int64_t M, int64_t D, float eps,
                         hipStream_t stream) {
  return dispatch<false>(out, x, w, w_type, M, D, eps, nullptr, nullptr, stream);
}

hipError_t greta_add_rmsnorm(float* sum, float* out, const float* a, const float* b, const void* w, int w_type, int64_t M,
                             int64_t D, float eps, hipStream_t stream) {
  return dispatch<true>(out, a, w, w_type, M, D, eps, sum, b, stream);
}
