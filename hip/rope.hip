#include "rope.h"

namespace {
using namespace greta_hip;

__global__ void rope_kernel(float* x, const int32_t* pos, const float* inv_freq, int64_t M, int n_heads, int head_dim) {
  const int half = head_dim / 2;
  const int64_t i = global_id();
  if (i >= M * n_heads * half) return;
  const int64_t m = i / (static_cast<int64_t>(n_heads) * half);
  const int h = static_cast<int>((i / half) % n_heads);
  const int j = static_cast<int>(i % half);
  // Precise sinf/cosf (not the fast intrinsics), as the CPU backend computes.
  const float angle = static_cast<float>(pos[m]) * inv_freq[j];
  const float c = cosf(angle), s = sinf(angle);
  float* hp = x + m * static_cast<int64_t>(n_heads) * head_dim + static_cast<int64_t>(h) * head_dim;
  const float x1 = hp[j], x2 = hp[j + half];
  // Each rotation is one rounded product and one fma, written out: the form
  // nvcc's default contraction gave these lines, now the same on every vendor.
  hp[j] = __fmaf_rn(x1, c, -__fmul_rn(x2, s));
  hp[j + half] = __fmaf_rn(x1, s, __fmul_rn(x2, c));
}
}  // namespace

hipError_t greta_rope(float* x, const int32_t* pos, const float* inv_freq, int64_t M, int n_heads, int head_dim,
                      hipStream_t stream) {
  hipLaunchKernelGGL(rope_kernel, dim3(elementwise_blocks(M * n_heads * (head_dim / 2))), dim3(ELEMENTWISE_BLOCK), 0, stream, x, pos,
                     inv_freq, M, n_heads, head_dim);
  return hipGetLastError();
}
