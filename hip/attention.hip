#include "attention.h"

namespace {
using namespace greta_hip;

constexpr int KEY_CHUNK = 64;
constexpr int MAX_HEAD_DIM = 256;
constexpr int WAVES = 4;  // (m, h) pairs per block

__global__ void attention_kernel(float* __restrict__ out, const float* __restrict__ q, const float* __restrict__ kc,
                                 const float* __restrict__ vc, const int32_t* __restrict__ pos, int64_t M, int n_heads,
                                 int n_kv_heads, int head_dim) {
  __shared__ float q_s[WAVES][MAX_HEAD_DIM];
  __shared__ float p_s[WAVES][KEY_CHUNK];
  const int wave = threadIdx.x / GRETA_WAVE_SIZE;
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t task = static_cast<int64_t>(blockIdx.x) * WAVES + wave;
  if (task >= M * n_heads) return;  // whole waves leave; only wave-level sync below
  const int64_t m = task / n_heads;
  const int h = static_cast<int>(task % n_heads);
  const int64_t q_stride = static_cast<int64_t>(n_heads) * head_dim;
  const int64_t kv_stride = static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t kv_off = static_cast<int64_t>(h / (n_heads / n_kv_heads)) * head_dim;
  const float scale = 1.f / sqrtf(static_cast<float>(head_dim));
  const int64_t n_keys = static_cast<int64_t>(pos[m]) + 1;

  for (int d = lane; d < head_dim; d += GRETA_WAVE_SIZE) q_s[wave][d] = q[m * q_stride + h * head_dim + d];
  constexpr int DIMS = MAX_HEAD_DIM / GRETA_WAVE_SIZE;  // output dims per lane, upper bound
  float acc[DIMS];
#pragma unroll
  for (int i = 0; i < DIMS; i++) acc[i] = 0.f;
  float run_max = -INFINITY;
  float run_sum = 0.f;
  GRETA_SYNC_WAVE();

  for (int64_t c0 = 0; c0 < n_keys; c0 += KEY_CHUNK) {
    const int len = static_cast<int>(n_keys - c0 < KEY_CHUNK ? n_keys - c0 : KEY_CHUNK);
    // Scores: lane owns keys c0 + lane, c0 + lane + W, ... of the chunk.
    float local_max = -INFINITY;
    for (int j = lane; j < len; j += GRETA_WAVE_SIZE) {
      const float* kj = kc + (c0 + j) * kv_stride + kv_off;
      float s = 0.f;
      for (int d = 0; d < head_dim; d++) s += q_s[wave][d] * kj[d];
      s *= scale;
      p_s[wave][j] = s;
      local_max = fmaxf(local_max, s);
    }
    const float chunk_max = wave_max(local_max);
    const float new_max = fmaxf(run_max, chunk_max);
    float local_sum = 0.f;
    for (int j = lane; j < len; j += GRETA_WAVE_SIZE) {
      const float p = expf(p_s[wave][j] - new_max);
      p_s[wave][j] = p;
      local_sum += p;
    }
    const float chunk_sum = wave_sum(local_sum);
    const float alpha = expf(run_max - new_max);  // 0 on the first chunk
    run_sum = run_sum * alpha + chunk_sum;
    run_max = new_max;
    GRETA_SYNC_WAVE();
#pragma unroll
    for (int i = 0; i < DIMS; i++) {
      const int d = lane + i * GRETA_WAVE_SIZE;
      if (d < head_dim) {
        float a = acc[i] * alpha;
        for (int j = 0; j < len; j++) a += p_s[wave][j] * vc[(c0 + j) * kv_stride + kv_off + d];
        acc[i] = a;
      }
    }
    GRETA_SYNC_WAVE();
  }
  const float inv = 1.f / run_sum;
#pragma unroll
  for (int i = 0; i < DIMS; i++) {
    const int d = lane + i * GRETA_WAVE_SIZE;
    if (d < head_dim) out[m * q_stride + h * head_dim + d] = acc[i] * inv;
  }
}
}  // namespace

hipError_t greta_attention(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                           int64_t M, int n_heads, int n_kv_heads, int head_dim, hipStream_t stream) {
  if (head_dim > MAX_HEAD_DIM) return hipErrorInvalidValue;
  const int64_t tasks = M * n_heads;
  hipLaunchKernelGGL(attention_kernel, dim3(static_cast<unsigned>((tasks + WAVES - 1) / WAVES)),
                     dim3(WAVES * GRETA_WAVE_SIZE), 0, stream, out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads,
                     head_dim);
  return hipGetLastError();
}
