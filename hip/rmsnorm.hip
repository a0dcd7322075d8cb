#include "rmsnorm.h"

namespace {
using namespace greta_hip;

constexpr int BLOCK = 256;

// ADD: x is first made as a + b (stored to sum), each thread adding exactly
// the elements it squares and later scales.
// PER > 0 (rows of at most PER * BLOCK): a thread's elements and weights are
// loaded into registers at once, so the row costs one memory latency rather
// than one per element; the arithmetic and its order are the loop's (PER = 0).
template <typename W, bool ADD, int PER>
__global__ void rmsnorm_kernel(float* out, const float* x, const W* __restrict__ w, int64_t D,
                               float eps, float* sum, const float* b) {
  greta_allow_next_launch();
  __shared__ float wave_sums[BLOCK / GRETA_WAVE_SIZE];
  __shared__ float inv_rms;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * D;
  float* o = out + row;
  float ss = 0.f;
  float v[PER > 0 ? PER : 1], wv[PER > 0 ? PER : 1];
  if constexpr (PER > 0) {
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int64_t i = threadIdx.x + j * BLOCK;
      wv[j] = i < D ? to_f32(w[i]) : 0.f;
    }
    greta_await_prior_kernels();
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int64_t i = threadIdx.x + j * BLOCK;
      if (i < D) v[j] = ADD ? __fadd_rn(greta_load(x + row + i), greta_load(b + row + i)) : greta_load(x + row + i);
    }
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int64_t i = threadIdx.x + j * BLOCK;
      if (i < D) {
        if (ADD) sum[row + i] = v[j];
        ss = __fmaf_rn(v[j], v[j], ss);
      }
    }
  } else {
    greta_await_prior_kernels();
    const float* xr = (ADD ? sum : x) + row;
    for (int64_t i = threadIdx.x; i < D; i += BLOCK) {
      if (ADD) sum[row + i] = __fadd_rn(x[row + i], b[row + i]);
      ss = __fmaf_rn(xr[i], xr[i], ss);
    }
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
  if constexpr (PER > 0) {
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int64_t i = threadIdx.x + j * BLOCK;
      if (i < D) o[i] = v[j] * inv_rms * wv[j];
    }
  } else {
    const float* xr = (ADD ? sum : x) + row;
    for (int64_t i = threadIdx.x; i < D; i += BLOCK) o[i] = xr[i] * inv_rms * to_f32(w[i]);
  }
}

// Elements a thread keeps in registers: rows up to RMSNORM_NARROW * BLOCK
// (4096: Llama-3-8B) and RMSNORM_WIDE * BLOCK (8192); longer ones loop.
constexpr int RMSNORM_NARROW = 16;
constexpr int RMSNORM_WIDE = 32;

template <typename W, bool ADD>
hipError_t launch(float* out, const float* x, const void* w, int64_t M, int64_t D, float eps, float* sum, const float* b,
                  hipStream_t stream) {
  const dim3 grid(static_cast<unsigned>(M)), block(BLOCK);
  const W* wt = static_cast<const W*>(w);
  if (D <= RMSNORM_NARROW * BLOCK)
    GRETA_LAUNCH((rmsnorm_kernel<W, ADD, RMSNORM_NARROW>), grid, block, 0, stream, out, x, wt, D, eps, sum, b);
  else if (D <= RMSNORM_WIDE * BLOCK)
    GRETA_LAUNCH((rmsnorm_kernel<W, ADD, RMSNORM_WIDE>), grid, block, 0, stream, out, x, wt, D, eps, sum, b);
  else
    GRETA_LAUNCH((rmsnorm_kernel<W, ADD, 0>), grid, block, 0, stream, out, x, wt, D, eps, sum, b);
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
