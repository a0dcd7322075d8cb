#include "kv_write.h"

namespace {
using namespace greta_hip;

__global__ void kv_write_kernel(GretaKvWrites w, const int32_t* pos, int64_t M) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  int64_t all = 0;
  for (int k = 0; k < w.count; k++) all += w.width[k];
  const int64_t i = global_id();
  if (i >= M * all) return;
  const int64_t m = i / all;
  int64_t d = i % all;
  int k = 0;
  while (d >= w.width[k]) d -= w.width[k++];  // the pair this element belongs to
  w.cache[k][static_cast<int64_t>(pos[m]) * w.width[k] + d] = w.src[k][m * w.width[k] + d];
}
}  // namespace

hipError_t greta_kv_write(const GretaKvWrites& w, const int32_t* pos, int64_t M, hipStream_t stream) {
  int64_t all = 0;
  for (int k = 0; k < w.count; k++) all += w.width[k];
  GRETA_LAUNCH(kv_write_kernel, dim3(elementwise_blocks(M * all)), dim3(ELEMENTWISE_BLOCK), 0, stream, w, pos, M);
  return hipGetLastError();
}
