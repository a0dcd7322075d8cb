#include "rope.h"

namespace {
using namespace greta_hip;

// Threads [0, M * heads * half) rotate one pair each (and store it into the
// caches that take it); the rest copy the writes that take unrotated sources.
// The arguments' arrays are read with constant indices only: indexed by a
// variable, a kernel argument is copied to local memory.
__global__ void rope_kernel(GretaRopeTargets t, const int32_t* pos, const float* inv_freq, int64_t M, int head_dim,
                            GretaRopeWrites wr) {
  greta_allow_next_launch();
  const int half = head_dim / 2;
  int all_heads = 0;
#pragma unroll
  for (int k = 0; k < GRETA_ROPE_MAX; k++)
    if (k < t.count) all_heads += t.heads[k];
  const int writes = wr.pos ? wr.w.count : 0;
  const int64_t pairs = M * all_heads * half;
  int64_t i = global_id();
  if (i < pairs) {
    const int64_t m = i / (static_cast<int64_t>(all_heads) * half);
    int h = static_cast<int>((i / half) % all_heads);
    const int j = static_cast<int>(i % half);
    // The tensor this head belongs to.
    int k = 0;
    float* xk = t.x[0];
    int heads_k = t.heads[0];
#pragma unroll
    for (int q = 1; q < GRETA_ROPE_MAX; q++)
      if (q < t.count && k == q - 1 && h >= heads_k) {
        h -= heads_k;
        k = q;
        xk = t.x[q];
        heads_k = t.heads[q];
      }
    // The angle before the wait: positions and frequencies reach the device
    // before any kernel of the call runs. Precise sinf/cosf (not the fast
    // intrinsics), as the CPU backend computes.
    const float angle = static_cast<float>(pos[m]) * inv_freq[j];
    const float c = cosf(angle), s = sinf(angle);
    greta_await_prior_kernels();
    float* hp = xk + m * static_cast<int64_t>(heads_k) * head_dim + static_cast<int64_t>(h) * head_dim;
    const float x1 = hp[j], x2 = hp[j + half];
    // Each rotation is one rounded product and one fma, written out: the form
    // nvcc's default contraction gave these lines, now the same on every vendor.
    const float y1 = __fmaf_rn(x1, c, -__fmul_rn(x2, s));
    const float y2 = __fmaf_rn(x1, s, __fmul_rn(x2, c));
    hp[j] = y1;
    hp[j + half] = y2;
#pragma unroll
    for (int w = 0; w < GRETA_KV_WRITE_MAX; w++)
      if (w < writes && wr.from[w] == k) {
        float* row = wr.w.cache[w] + static_cast<int64_t>(wr.pos[m]) * wr.w.width[w] + static_cast<int64_t>(h) * head_dim;
        row[j] = y1;
        row[j + half] = y2;
      }
    return;
  }
  greta_await_prior_kernels();
  i -= pairs;
  int64_t copied = 0;  // elements of a row the copies take
#pragma unroll
  for (int w = 0; w < GRETA_KV_WRITE_MAX; w++)
    if (w < writes && wr.from[w] < 0) copied += wr.w.width[w];
  if (i >= M * copied) return;
  const int64_t m = i / copied;
  int64_t d = i % copied;
  // The write this element belongs to.
  bool found = false;
#pragma unroll
  for (int w = 0; w < GRETA_KV_WRITE_MAX; w++) {
    if (found || w >= writes || wr.from[w] >= 0) continue;
    if (d < wr.w.width[w]) {
      wr.w.cache[w][static_cast<int64_t>(wr.pos[m]) * wr.w.width[w] + d] = wr.w.src[w][m * wr.w.width[w] + d];
      found = true;
    } else {
      d -= wr.w.width[w];
    }
  }
}
}  // namespace

hipError_t greta_rope(const GretaRopeTargets& t, const int32_t* pos, const float* inv_freq, int64_t M, int head_dim,
                      const GretaRopeWrites& writes, hipStream_t stream) {
  int64_t all_heads = 0, copied = 0;
  for (int k = 0; k < t.count; k++) all_heads += t.heads[k];
  if (writes.pos)
    for (int w = 0; w < writes.w.count; w++) {
      if (writes.from[w] >= t.count) return hipErrorInvalidValue;
      if (writes.from[w] < 0) copied += writes.w.width[w];
      else if (writes.w.width[w] != t.heads[writes.from[w]] * static_cast<int64_t>(head_dim)) return hipErrorInvalidValue;
    }
  GRETA_LAUNCH(rope_kernel, dim3(elementwise_blocks(M * (all_heads * (head_dim / 2) + copied))), dim3(ELEMENTWISE_BLOCK),
               0, stream, t, pos, inv_freq, M, head_dim, writes);
  return hipGetLastError();
}
