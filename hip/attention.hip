#include "attention.h"

namespace {
using namespace greta_hip;

constexpr int KEY_CHUNK = 64;  // keys per chunk: the fixed split size
// The other splits the planted key-split fault may ask for (key_chunk 32, 16).
constexpr int HALF_KEY_CHUNK = KEY_CHUNK / 2;
constexpr int QUARTER_KEY_CHUNK = KEY_CHUNK / 4;
constexpr int MAX_HEAD_DIM = 256;
constexpr int WAVES = 4;  // waves per block, each on its own (row, head[, chunk])
constexpr int DIMS = MAX_HEAD_DIM / GRETA_WAVE_SIZE;  // output dims per lane, at most

struct Geometry {
  int n_heads, n_kv_heads, head_dim;
  int64_t q_stride, kv_stride;
};

__device__ __forceinline__ Geometry geometry(int n_heads, int n_kv_heads, int head_dim) {
  return {n_heads, n_kv_heads, head_dim, static_cast<int64_t>(n_heads) * head_dim,
          static_cast<int64_t>(n_kv_heads) * head_dim};
}

// Running state of the softmax-weighted sum, one lane's share of the dims.
struct State {
  float m, l;
  float acc[DIMS];
};

__device__ __forceinline__ void init(State& s) {
  s.m = -INFINITY;
  s.l = 0.f;
#pragma unroll
  for (int i = 0; i < DIMS; i++) s.acc[i] = 0.f;
}

// The partial of one chunk: scores into p (shared), chunk max and exp-sum by
// butterfly, p.V per lane in increasing key order. The probe (PROBE) also
// copies each score and each exp(s - m_c) out to scores_out/p_out, indexed
// by key within the chunk; the model's instantiation does not have the stores.
template <bool PROBE = false>
__device__ void chunk_partial(State& part, const float* q_s, float* p, const float* kc, const float* vc, int64_t c0,
                              int len, int64_t kv_off, const Geometry& g, float scale, int lane,
                              float* scores_out = nullptr, float* p_out = nullptr) {
  float local_max = -INFINITY;
  for (int j = lane; j < len; j += GRETA_WAVE_SIZE) {
    const float* kj = kc + (c0 + j) * g.kv_stride + kv_off;
    float s = 0.f;
    for (int d = 0; d < g.head_dim; d++) s = __fmaf_rn(q_s[d], kj[d], s);
    s = __fmul_rn(s, scale);
    p[j] = s;
    if (PROBE) scores_out[j] = s;
    local_max = fmaxf(local_max, s);
  }
  part.m = wave_max(local_max);
  float local_sum = 0.f;
  for (int j = lane; j < len; j += GRETA_WAVE_SIZE) {
    const float e = expf(__fadd_rn(p[j], -part.m));
    p[j] = e;
    if (PROBE) p_out[j] = e;
    local_sum = __fadd_rn(local_sum, e);
  }
  part.l = wave_sum(local_sum);
  GRETA_SYNC_WAVE();
#pragma unroll
  for (int i = 0; i < DIMS; i++) {
    const int d = lane + i * GRETA_WAVE_SIZE;
    float a = 0.f;
    if (d < g.head_dim)
      for (int j = 0; j < len; j++) a = __fmaf_rn(p[j], vc[(c0 + j) * g.kv_stride + kv_off + d], a);
    part.acc[i] = a;
  }
  GRETA_SYNC_WAVE();
}

// Merges a chunk's partial into the running state; the probe reads the two
// rescale factors back (a for what came before, b for the chunk).
__device__ __forceinline__ void merge(State& s, float m_c, float l_c, const float* acc_c, float* a_out = nullptr,
                                      float* b_out = nullptr) {
  const float m = fmaxf(s.m, m_c);
  const float a = expf(__fadd_rn(s.m, -m));  // 0 while s is empty
  const float b = expf(__fadd_rn(m_c, -m));
  if (a_out) {
    *a_out = a;
    *b_out = b;
  }
  s.l = __fadd_rn(__fmul_rn(s.l, a), __fmul_rn(l_c, b));
#pragma unroll
  for (int i = 0; i < DIMS; i++) s.acc[i] = __fadd_rn(__fmul_rn(s.acc[i], a), __fmul_rn(acc_c[i], b));
  s.m = m;
}

__device__ __forceinline__ void finish(const State& s, float* out, const Geometry& g, int lane) {
  const float inv = __fdiv_rn(1.f, s.l);
#pragma unroll
  for (int i = 0; i < DIMS; i++) {
    const int d = lane + i * GRETA_WAVE_SIZE;
    if (d < g.head_dim) out[d] = __fmul_rn(s.acc[i], inv);
  }
}

__device__ __forceinline__ void load_q(float* q_s, const float* q, int64_t m, int h, const Geometry& g, int lane) {
  for (int d = lane; d < g.head_dim; d += GRETA_WAVE_SIZE) q_s[d] = q[m * g.q_stride + static_cast<int64_t>(h) * g.head_dim + d];
  GRETA_SYNC_WAVE();
}

// The model's score scale, computed where it is used: passing it in as a
// kernel argument instead measurably slows the decode kernel (ptxas schedules
// its address arithmetic differently: 70 -> 84 us at 291 keys on an H100).
__device__ __forceinline__ float default_scale(int head_dim) {
  return __fdiv_rn(1.f, sqrtf(static_cast<float>(head_dim)));
}

// One wave per (row, head): chunks of CHUNK keys made and merged in order, in
// registers. CHUNK is KEY_CHUNK and the scale the model's, except for the
// planted faults (another split, another scale: CUSTOM_SCALE).
template <int CHUNK, bool CUSTOM_SCALE>
__global__ void attention_rows_kernel(float* __restrict__ out, const float* __restrict__ q, const float* __restrict__ kc,
                                      const float* __restrict__ vc, const int32_t* __restrict__ pos, int64_t M,
                                      int n_heads, int n_kv_heads, int head_dim, float custom_scale) {
  __shared__ float q_s[WAVES][MAX_HEAD_DIM];
  __shared__ float p_s[WAVES][CHUNK];
  const int wave = threadIdx.x / GRETA_WAVE_SIZE, lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t task = static_cast<int64_t>(blockIdx.x) * WAVES + wave;
  if (task >= M * n_heads) return;  // whole waves leave; only wave-level sync below
  const Geometry g = geometry(n_heads, n_kv_heads, head_dim);
  const int64_t m = task / n_heads;
  const int h = static_cast<int>(task % n_heads);
  const int64_t kv_off = static_cast<int64_t>(h / (n_heads / n_kv_heads)) * head_dim;
  const float scale = CUSTOM_SCALE ? custom_scale : default_scale(head_dim);
  const int64_t n_keys = static_cast<int64_t>(pos[m]) + 1;
  load_q(q_s[wave], q, m, h, g, lane);
  State s, part;
  init(s);
  for (int64_t c0 = 0; c0 < n_keys; c0 += CHUNK) {
    const int len = static_cast<int>(n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK);
    chunk_partial(part, q_s[wave], p_s[wave], kc, vc, c0, len, kv_off, g, scale, lane);
    merge(s, part.m, part.l, part.acc);
  }
  finish(s, out + m * g.q_stride + static_cast<int64_t>(h) * head_dim, g, lane);
}

// Split layout: one wave per (row, head, chunk) writes its partial; then one
// wave per (row, head) merges them in chunk order. Partial record:
// [m, l, acc of lane 0 dims..., acc of lane 1 dims..., ...] as DIMS x W floats.
constexpr int PARTIAL_FLOATS = 2 + DIMS * GRETA_WAVE_SIZE;

__global__ void attention_chunks_kernel(float* __restrict__ partials, const float* __restrict__ q,
                                        const float* __restrict__ kc, const float* __restrict__ vc,
                                        const int32_t* __restrict__ pos, int64_t M, int n_heads, int n_kv_heads,
                                        int head_dim, int64_t max_chunks) {
  __shared__ float q_s[WAVES][MAX_HEAD_DIM];
  __shared__ float p_s[WAVES][KEY_CHUNK];
  const int wave = threadIdx.x / GRETA_WAVE_SIZE, lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * WAVES + wave;
  if (item >= M * n_heads * max_chunks) return;
  const Geometry g = geometry(n_heads, n_kv_heads, head_dim);
  const int64_t task = item / max_chunks, c = item % max_chunks;
  const int64_t m = task / n_heads;
  const int h = static_cast<int>(task % n_heads);
  const int64_t n_keys = static_cast<int64_t>(pos[m]) + 1;
  const int64_t c0 = c * KEY_CHUNK;
  if (c0 >= n_keys) return;
  const int len = static_cast<int>(n_keys - c0 < KEY_CHUNK ? n_keys - c0 : KEY_CHUNK);
  const int64_t kv_off = static_cast<int64_t>(h / (n_heads / n_kv_heads)) * head_dim;
  const float scale = default_scale(head_dim);
  load_q(q_s[wave], q, m, h, g, lane);
  State part;
  chunk_partial(part, q_s[wave], p_s[wave], kc, vc, c0, len, kv_off, g, scale, lane);
  float* rec = partials + item * PARTIAL_FLOATS;
  if (lane == 0) {
    rec[0] = part.m;
    rec[1] = part.l;
  }
#pragma unroll
  for (int i = 0; i < DIMS; i++) rec[2 + i * GRETA_WAVE_SIZE + lane] = part.acc[i];
}

__global__ void attention_merge_kernel(float* __restrict__ out, const float* __restrict__ partials,
                                       const int32_t* __restrict__ pos, int64_t M, int n_heads, int n_kv_heads,
                                       int head_dim, int64_t max_chunks) {
  const int wave = threadIdx.x / GRETA_WAVE_SIZE, lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t task = static_cast<int64_t>(blockIdx.x) * WAVES + wave;
  if (task >= M * n_heads) return;
  const Geometry g = geometry(n_heads, n_kv_heads, head_dim);
  const int64_t m = task / n_heads;
  const int h = static_cast<int>(task % n_heads);
  const int64_t n_chunks = (static_cast<int64_t>(pos[m]) + KEY_CHUNK) / KEY_CHUNK;
  State s;
  init(s);
  float acc_c[DIMS];
  for (int64_t c = 0; c < n_chunks; c++) {
    const float* rec = partials + (task * max_chunks + c) * PARTIAL_FLOATS;
#pragma unroll
    for (int i = 0; i < DIMS; i++) acc_c[i] = rec[2 + i * GRETA_WAVE_SIZE + lane];
    merge(s, rec[0], rec[1], acc_c);
  }
  finish(s, out + m * g.q_stride + static_cast<int64_t>(h) * head_dim, g, lane);
}

// The probe: one row at position pos, one wave per head, exactly the rows
// kernel's chain of operations (so its pv equals the fused op's row bit for
// bit), also writing each key's score and its weight in the output: the
// chunk's exp(s - m_c) times the merge rescales applied after that chunk
// (b_c, then every later a, in merge order), times 1/l. `factors` holds
// 2 * n_chunks floats per head.
template <int CHUNK, bool CUSTOM_SCALE>
__global__ void attention_probe_kernel(float* __restrict__ scores, float* __restrict__ probs, float* __restrict__ pv,
                                       float* __restrict__ factors, const float* __restrict__ q,
                                       const float* __restrict__ kc, const float* __restrict__ vc, int32_t pos,
                                       int n_heads, int n_kv_heads, int head_dim, float custom_scale) {
  __shared__ float q_s[WAVES][MAX_HEAD_DIM];
  __shared__ float p_s[WAVES][CHUNK];
  const int wave = threadIdx.x / GRETA_WAVE_SIZE, lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int h = static_cast<int>(blockIdx.x) * WAVES + wave;
  if (h >= n_heads) return;
  const Geometry g = geometry(n_heads, n_kv_heads, head_dim);
  const int64_t kv_off = static_cast<int64_t>(h / (n_heads / n_kv_heads)) * head_dim;
  const float scale = CUSTOM_SCALE ? custom_scale : default_scale(head_dim);
  const int64_t n_keys = static_cast<int64_t>(pos) + 1;
  const int64_t n_chunks = (n_keys + CHUNK - 1) / CHUNK;
  float* sc = scores + h * n_keys;
  float* pr = probs + h * n_keys;
  float* fa = factors + h * 2 * n_chunks;  // a_c at [c], b_c at [n_chunks + c]
  load_q(q_s[wave], q, 0, h, g, lane);
  State s, part;
  init(s);
  for (int64_t c0 = 0, c = 0; c0 < n_keys; c0 += CHUNK, c++) {
    const int len = static_cast<int>(n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK);
    chunk_partial<true>(part, q_s[wave], p_s[wave], kc, vc, c0, len, kv_off, g, scale, lane, sc + c0, pr + c0);
    float a, b;
    merge(s, part.m, part.l, part.acc, &a, &b);
    if (lane == 0) {
      fa[c] = a;
      fa[n_chunks + c] = b;
    }
  }
  finish(s, pv + static_cast<int64_t>(h) * head_dim, g, lane);
  __threadfence_block();
  GRETA_SYNC_WAVE();
  const float inv = __fdiv_rn(1.f, s.l);
  for (int64_t j = lane; j < n_keys; j += GRETA_WAVE_SIZE) {
    const int64_t c = j / CHUNK;
    float f = fa[n_chunks + c];
    for (int64_t later = c + 1; later < n_chunks; later++) f = __fmul_rn(f, fa[later]);
    pr[j] = __fmul_rn(__fmul_rn(pr[j], f), inv);
  }
}

template <int CHUNK>
hipError_t launch_probe(float* scores, float* probs, float* pv, float* factors, const float* q, const float* k_cache,
                        const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                        const float* custom_scale, hipStream_t stream) {
  const dim3 grid((n_heads + WAVES - 1) / WAVES), block(WAVES * GRETA_WAVE_SIZE);
  if (custom_scale)
    hipLaunchKernelGGL((attention_probe_kernel<CHUNK, true>), grid, block, 0, stream, scores, probs, pv, factors, q,
                       k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, *custom_scale);
  else
    hipLaunchKernelGGL((attention_probe_kernel<CHUNK, false>), grid, block, 0, stream, scores, probs, pv, factors, q,
                       k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, 0.f);
  return hipGetLastError();
}

int64_t chunks_for(int64_t keys) { return (keys + KEY_CHUNK - 1) / KEY_CHUNK; }

unsigned blocks(int64_t waves) { return static_cast<unsigned>((waves + WAVES - 1) / WAVES); }
}  // namespace

size_t greta_attention_scratch_bytes(int64_t M, int n_heads, int head_dim, int64_t max_keys) {
  (void)head_dim;
  return M == 1 ? static_cast<size_t>(n_heads) * chunks_for(max_keys) * PARTIAL_FLOATS * sizeof(float) : 0;
}

template <int CHUNK>
hipError_t launch_fault_rows(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                             int64_t M, int n_heads, int n_kv_heads, int head_dim, const float* custom_scale,
                             hipStream_t stream) {
  const dim3 grid(blocks(M * n_heads)), block(WAVES * GRETA_WAVE_SIZE);
  if (custom_scale)
    hipLaunchKernelGGL((attention_rows_kernel<CHUNK, true>), grid, block, 0, stream, out, q, k_cache, v_cache, pos, M,
                       n_heads, n_kv_heads, head_dim, *custom_scale);
  else
    hipLaunchKernelGGL((attention_rows_kernel<CHUNK, false>), grid, block, 0, stream, out, q, k_cache, v_cache, pos, M,
                       n_heads, n_kv_heads, head_dim, 0.f);
  return hipGetLastError();
}

size_t greta_attention_probe_scratch_bytes(int n_heads, int32_t pos, int key_chunk) {
  const int64_t chunk = key_chunk == 0 ? KEY_CHUNK : key_chunk;
  return static_cast<size_t>(n_heads) * 2 * ((static_cast<int64_t>(pos) + chunk) / chunk) * sizeof(float);
}

hipError_t greta_attention_probe(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                                 const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                                 const float* custom_scale, int key_chunk, float* factors, hipStream_t stream) {
  if (head_dim > MAX_HEAD_DIM) return hipErrorInvalidValue;
  switch (key_chunk) {
    case 0:
    case KEY_CHUNK: return launch_probe<KEY_CHUNK>(scores, probs, pv, factors, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, custom_scale, stream);
    case HALF_KEY_CHUNK: return launch_probe<HALF_KEY_CHUNK>(scores, probs, pv, factors, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, custom_scale, stream);
    case QUARTER_KEY_CHUNK: return launch_probe<QUARTER_KEY_CHUNK>(scores, probs, pv, factors, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, custom_scale, stream);
    default: return hipErrorInvalidValue;
  }
}

hipError_t greta_attention(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                           int64_t M, int n_heads, int n_kv_heads, int head_dim, int64_t max_keys,
                           const float* custom_scale, int key_chunk, float* partials, hipStream_t stream) {
  if (head_dim > MAX_HEAD_DIM) return hipErrorInvalidValue;
  if (custom_scale || (key_chunk != 0 && key_chunk != KEY_CHUNK)) {
    // Planted faults: one wave per (row, head), whatever M (the split layout
    // does not change the bits).
    switch (key_chunk) {
      case 0:
      case KEY_CHUNK: return launch_fault_rows<KEY_CHUNK>(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, head_dim, custom_scale, stream);
      case HALF_KEY_CHUNK: return launch_fault_rows<HALF_KEY_CHUNK>(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, head_dim, custom_scale, stream);
      case QUARTER_KEY_CHUNK: return launch_fault_rows<QUARTER_KEY_CHUNK>(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, head_dim, custom_scale, stream);
      default: return hipErrorInvalidValue;
    }
  }
  const dim3 block(WAVES * GRETA_WAVE_SIZE);
  const int64_t max_chunks = chunks_for(max_keys);
  if (M == 1 && max_chunks > 1) {
    // Decode: too few (row, head) pairs to fill the device; spread the chunks.
    hipLaunchKernelGGL(attention_chunks_kernel, dim3(blocks(n_heads * max_chunks)), block, 0, stream, partials, q,
                       k_cache, v_cache, pos, M, n_heads, n_kv_heads, head_dim, max_chunks);
    hipError_t e = hipGetLastError();
    if (e != hipSuccess) return e;
    hipLaunchKernelGGL(attention_merge_kernel, dim3(blocks(n_heads)), block, 0, stream, out, partials, pos, M, n_heads,
                       n_kv_heads, head_dim, max_chunks);
    return hipGetLastError();
  }
  hipLaunchKernelGGL((attention_rows_kernel<KEY_CHUNK, false>), dim3(blocks(M * n_heads)), block, 0, stream, out, q,
                     k_cache, v_cache, pos, M, n_heads, n_kv_heads, head_dim, 0.f);
  return hipGetLastError();
}
