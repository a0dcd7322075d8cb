#include "rope.h"

namespace {
using namespace greta_hip;

__global__ void rope_kernel(GretaRopeTargets t, const int32_t* pos, const float* inv_freq, int64_t M, int head_dim) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int half = head_dim / 2;
  int all_heads = 0;
  for (int k = 0; k < t.count; k++) all_heads += t.heads[k];
  const int64_t i = global_id();
  if (i >= M * all_heads * half) return;
  const int64_t m = i / (static_cast<int64_t>(all_heads) * half);
  int h = static_cast<int>((i / half) % all_heads);
  const int j = static_cast<int>(i % half);
  int k = 0;
  while (h >= t.heads[k]) h -= t.heads[k++];  // the tensor this head belongs to
  // Precise sinf/cosf (not the fast intrinsics), as the CPU backend computes.
  const float angle = static_cast<float>(pos[m]) * inv_freq[j];
  const float c = cosf(angle), s = sinf(angle);
  float* hp = t.x[k] + m * static_cast<int64_t>(t.heads[k]) * head_dim + static_cast<int64_t>(h) * head_dim;
  const float x1 = hp[j], x2 = hp[j + half];
  // Each rotation is one rounded product and one fma, written out: the form
  // nvcc's default contraction gave these lines, now the same on every vendor.
  hp[j] = __fmaf_rn(x1, c, -__fmul_rn(x2, s));
  hp[j + half] = __fmaf_rn(x1, s, __fmul_rn(x2, c));
}
}  // namespace

hipError_t greta_rope(const GretaRopeTargets& t, const int32_t* pos, const float* inv_freq, int64_t M, int head_dim,
                      hipStream_t stream) {
  int64_t all_heads = 0;
  for (int k = 0; k < t.count; k++) all_heads += t.heads[k];
  GRETA_LAUNCH(rope_kernel, dim3(elementwise_blocks(M * all_heads * (head_dim / 2))), dim3(ELEMENTWISE_BLOCK), 0, stream, t,
               pos, inv_freq, M, head_dim);
  return hipGetLastError();
}
