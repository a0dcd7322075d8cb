#include "topk.h"

namespace {
constexpr int BLOCK = 1024;

struct Cand {
  float v;
  int64_t i;  // -1: none
};

// true when a ranks before b
__device__ __forceinline__ bool before(Cand a, Cand b) {
  if (a.i < 0) return false;
  if (b.i < 0) return true;
  const bool na = isnan(a.v), nb = isnan(b.v);
  if (na != nb) return nb;
  if (!na && a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}

__global__ void topk_kernel(const float* x, int64_t n, int k, int32_t* ids, float* values) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  __shared__ Cand best[BLOCK];
  const float* row = x + static_cast<int64_t>(blockIdx.x) * n;
  Cand prev{0.f, -1};
  for (int r = 0; r < k; r++) {
    Cand mine{0.f, -1};
    for (int64_t i = threadIdx.x; i < n; i += BLOCK) {
      Cand c{row[i], i};
      if ((prev.i < 0 || before(prev, c)) && before(c, mine)) mine = c;
    }
    best[threadIdx.x] = mine;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
      if (static_cast<int>(threadIdx.x) < s && before(best[threadIdx.x + s], best[threadIdx.x])) best[threadIdx.x] = best[threadIdx.x + s];
      __syncthreads();
    }
    prev = best[0];
    if (threadIdx.x == 0) {
      ids[static_cast<int64_t>(blockIdx.x) * k + r] = static_cast<int32_t>(prev.i);
      values[static_cast<int64_t>(blockIdx.x) * k + r] = prev.v;
    }
    __syncthreads();
  }
}
}  // namespace

hipError_t greta_topk(const float* x, int64_t rows, int64_t n, int k, int32_t* ids, float* values, hipStream_t stream) {
  GRETA_LAUNCH(topk_kernel, dim3(static_cast<unsigned>(rows)), dim3(BLOCK), 0, stream, x, n, k, ids, values);
  return hipGetLastError();
}
