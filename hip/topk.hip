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

// The first in the order of the block's THREADS candidates (one a thread): a
// fixed tree over shared memory `best`; every thread gets it.
template <int THREADS>
__device__ __forceinline__ Cand block_first(Cand mine, Cand* best) {
  best[threadIdx.x] = mine;
  __syncthreads();
  for (int s = THREADS / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s && before(best[threadIdx.x + s], best[threadIdx.x])) best[threadIdx.x] = best[threadIdx.x + s];
    __syncthreads();
  }
  return best[0];
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
    prev = block_first<BLOCK>(mine, best);
    if (threadIdx.x == 0) {
      ids[static_cast<int64_t>(blockIdx.x) * k + r] = static_cast<int32_t>(prev.i);
      values[static_cast<int64_t>(blockIdx.x) * k + r] = prev.v;
    }
    __syncthreads();  // every thread has read best[0] before the next round writes it
  }
}

// Top-1 of one long row (a decode step's logits) over many multiprocessors:
// block b picks the first in the order of its slice, then one block the first
// of those. The order is total, so the pick is the single-block kernel's. On
// the H100 the 8B step's top-1 went from 27.5 us of device time (one block)
// to 6.1 + 2.1 (dev/cupti_timeline.cpp), the step 6.00-6.06 -> 5.96-6.02 ms
// with its copy back in one piece (dev/decode_marginal.mjs, builds in turn).
constexpr int SPLIT_BLOCK = 256;
constexpr int SPLIT_BLOCKS = 128;

__global__ void __launch_bounds__(SPLIT_BLOCK) top1_slices_kernel(const float* x, int64_t n, Cand* firsts) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  __shared__ Cand best[SPLIT_BLOCK];
  const int64_t per = (n + SPLIT_BLOCKS - 1) / SPLIT_BLOCKS;
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * per, hi = lo + per < n ? lo + per : n;
  Cand mine{0.f, -1};
  for (int64_t i = lo + threadIdx.x; i < hi; i += SPLIT_BLOCK) {
    const Cand c{greta_load(x + i), i};
    if (before(c, mine)) mine = c;
  }
  const Cand first = block_first<SPLIT_BLOCK>(mine, best);
  if (threadIdx.x == 0) firsts[blockIdx.x] = first;
}

__global__ void __launch_bounds__(SPLIT_BLOCKS) top1_merge_kernel(const Cand* firsts, int32_t* ids, float* values) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  __shared__ Cand best[SPLIT_BLOCKS];
  const Cand c = firsts[threadIdx.x];
  const Cand first = block_first<SPLIT_BLOCKS>(c, best);
  if (threadIdx.x == 0) {
    ids[0] = static_cast<int32_t>(first.i);
    values[0] = first.v;
  }
}
}  // namespace

size_t greta_topk_scratch_bytes() { return SPLIT_BLOCKS * sizeof(Cand); }

hipError_t greta_topk(const float* x, int64_t rows, int64_t n, int k, int32_t* ids, float* values, void* scratch,
                      hipStream_t stream) {
  if (rows == 1 && k == 1 && n >= static_cast<int64_t>(SPLIT_BLOCKS) * SPLIT_BLOCK) {
    Cand* firsts = static_cast<Cand*>(scratch);
    GRETA_LAUNCH(top1_slices_kernel, dim3(SPLIT_BLOCKS), dim3(SPLIT_BLOCK), 0, stream, x, n, firsts);
    hipError_t e = hipGetLastError();
    if (e != hipSuccess) return e;
    GRETA_LAUNCH(top1_merge_kernel, dim3(1), dim3(SPLIT_BLOCKS), 0, stream, static_cast<const Cand*>(firsts), ids, values);
    return hipGetLastError();
  }
  GRETA_LAUNCH(topk_kernel, dim3(static_cast<unsigned>(rows)), dim3(BLOCK), 0, stream, x, n, k, ids, values);
  return hipGetLastError();
}
