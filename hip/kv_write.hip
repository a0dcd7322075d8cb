#include "kv_write.h"

namespace {
using namespace greta_hip;

__global__ void kv_write_kernel(float* cache, const float* src, const int32_t* pos, int64_t M, int64_t D) {
  const int64_t i = global_id();
  if (i >= M * D) return;
  const int64_t m = i / D, d = i % D;
  cache[static_cast<int64_t>(pos[m]) * D + d] = src[i];
}
}  // namespace

hipError_t greta_kv_write(float* cache, const float* src, const int32_t* pos, int64_t M, int64_t D, hipStream_t stream) {
  hipLaunchKernelGGL(kv_write_kernel, dim3(elementwise_blocks(M * D)), dim3(ELEMENTWISE_BLOCK), 0, stream, cache, src, pos, M, D);
  return hipGetLastError();
}
