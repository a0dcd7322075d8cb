#include "summarize.h"

namespace {
using namespace greta_hip;

constexpr int BLOCK = 256;

// One block's summary of row[0, n), into *out; the per-thread partials added
// in thread order by thread 0.
__device__ void summarize_block(const float* __restrict__ row, int64_t n, GretaSummary* out) {
  __shared__ GretaSummary part[BLOCK];
  GretaSummary s{0, 0, 0, INFINITY, -INFINITY, 0, 0, 0, 0};
  for (int64_t i = threadIdx.x; i < n; i += BLOCK) {
    const float v = row[i];
    s.hash += greta::hash_element(__float_as_uint(v), static_cast<uint64_t>(i));
    if (isnan(v)) {
      s.nan++;
    } else if (isinf(v)) {
      s.inf++;
    } else {
      const double d = v;
      s.sum += d;
      s.abs_sum += fabs(d);
      s.sq = __fma_rn(d, d, s.sq);
      s.min = fmin(s.min, d);
      s.max = fmax(s.max, d);
      s.finite++;
    }
  }
  part[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    GretaSummary t = part[0];
    for (int j = 1; j < BLOCK; j++) {
      const GretaSummary& p = part[j];
      t.sum += p.sum;
      t.abs_sum += p.abs_sum;
      t.sq += p.sq;
      t.min = fmin(t.min, p.min);
      t.max = fmax(t.max, p.max);
      t.nan += p.nan;
      t.inf += p.inf;
      t.finite += p.finite;
      t.hash += p.hash;
    }
    *out = t;
  }
}

__global__ void summarize_kernel(const float* __restrict__ row, int64_t n, const int64_t* sample_idx, int n_sample,
                                 GretaSummary* out, float* sample_out) {
  summarize_block(row, n, out);
  for (int j = threadIdx.x; j < n_sample; j += BLOCK) sample_out[j] = row[sample_idx[j]];
}

__global__ void summarize_spans_kernel(const float* __restrict__ x, const int32_t* __restrict__ spans, GretaSummary* out) {
  const int64_t i = blockIdx.x;
  summarize_block(x + spans[2 * i], spans[2 * i + 1], out + i);
}
}  // namespace

hipError_t greta_summarize(const float* row, int64_t n, const int64_t* sample_idx, int n_sample, GretaSummary* out,
                           float* sample_out, hipStream_t stream) {
  hipLaunchKernelGGL(summarize_kernel, dim3(1), dim3(BLOCK), 0, stream, row, n, sample_idx, n_sample, out, sample_out);
  return hipGetLastError();
}

hipError_t greta_summarize_spans(const float* x, const int32_t* spans, int64_t n, GretaSummary* out, hipStream_t stream) {
  hipLaunchKernelGGL(summarize_spans_kernel, dim3(static_cast<unsigned>(n)), dim3(BLOCK), 0, stream, x, spans, out);
  return hipGetLastError();
}
