#include "kv_write.h"

namespace {
using namespace greta_hip;

// The argument's arrays are read with constant indices only: indexed by a
// variable, a kernel argument is copied to local memory.
__global__ void kv_write_kernel(GretaKvWrites w, const int32_t* pos, int64_t M) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  int64_t all = 0;
#pragma unroll
  for (int k = 0; k < GRETA_KV_WRITE_MAX; k++)
    if (k < w.count) all += w.width[k];
  const int64_t i = global_id();
  if (i >= M * all) return;
  const int64_t m = i / all;
  int64_t d = i % all;
  // The pair this element belongs to.
  bool found = false;
#pragma unroll
  for (int k = 0; k < GRETA_KV_WRITE_MAX; k++) {
    if (found || k >= w.count) continue;
    if (d < w.width[k]) {
      w.cache[k][static_cast<int64_t>(pos[m]) * w.width[k] + d] = w.src[k][m * w.width[k] + d];
      found = true;
    } else {
      d -= w.width[k];
    }
  }
}
}  // namespace

hipError_t greta_kv_write(const GretaKvWrites& w, const int32_t* pos, int64_t M, hipStream_t stream) {
  int64_t all = 0;
  for (int k = 0; k < w.count; k++) all += w.width[k];
  GRETA_LAUNCH(kv_write_kernel, dim3(elementwise_blocks(M * all)), dim3(ELEMENTWISE_BLOCK), 0, stream, w, pos, M);
  return hipGetLastError();
}
