#include "summarize.h"

namespace {
using namespace greta_hip;

constexpr int BLOCK = 256;

// One block's summary of row[0, n), returned to thread 0 (the others get
// their own partial); the per-thread partials added in thread order.
__device__ GretaSummary summarize_block(const float* row, int64_t n) {
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
    s = t;
  }
  return s;
}

__global__ void summarize_kernel(const float* row, int64_t n, const int64_t* sample_idx, int n_sample,
                                 GretaSummary* out, float* sample_out) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const GretaSummary t = summarize_block(row, n);
  if (threadIdx.x == 0) *out = t;
  for (int j = threadIdx.x; j < n_sample; j += BLOCK) sample_out[j] = row[sample_idx[j]];
}

__global__ void summarize_spans_kernel(double* out, const float* x,
                                       const int32_t* spans) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = blockIdx.x;
  const GretaSummary t = summarize_block(x + spans[2 * i], spans[2 * i + 1]);
  if (threadIdx.x != 0) return;
  double* o = out + 8 * i;
  const double f = static_cast<double>(t.finite);
  const bool any = t.finite > 0;  // no finite values: zero stats, as the host gives
  o[0] = any ? t.sum / f : 0;
  o[1] = any ? t.abs_sum / f : 0;
  o[2] = any ? sqrt(t.sq / f) : 0;
  o[3] = any ? t.min : 0;
  o[4] = any ? t.max : 0;
  o[5] = static_cast<double>(t.nan);
  o[6] = static_cast<double>(t.inf);
  o[7] = __longlong_as_double(static_cast<long long>(t.hash));
}
}  // namespace

hipError_t greta_summarize(const float* row, int64_t n, const int64_t* sample_idx, int n_sample, GretaSummary* out,
                           float* sample_out, hipStream_t stream) {
  GRETA_LAUNCH(summarize_kernel, dim3(1), dim3(BLOCK), 0, stream, row, n, sample_idx, n_sample, out, sample_out);
  return hipGetLastError();
}

hipError_t greta_summarize_spans(double* out, const float* x, const int32_t* spans, int64_t n, hipStream_t stream) {
  GRETA_LAUNCH(summarize_spans_kernel, dim3(static_cast<unsigned>(n)), dim3(BLOCK), 0, stream, out, x, spans);
  return hipGetLastError();
}
